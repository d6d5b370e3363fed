"""The tracking process: signals, a killed trainer, and what the trainer itself loads."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from cvsweep.tracking import TrackingError, client_for

from .conftest import (
    QUICK,
    REPO,
    cli_env,
    read_until,
    run_train,
    start_train,
    store_uri,
    tracking_processes,
    wait_group_gone,
)

LONG_RUN = [
    "trainer.epochs=50",
    "dataset.train_limit=2048",
    "dataset.test_limit=500",
    "trainer.log_every=8",
    "trainer.progress=off",
]


def _start(tmp: Path, data: Path) -> subprocess.Popen[str]:
    return start_train(
        [*LONG_RUN, f"tracking.uri={store_uri(tmp)}", f"hydra.run.dir={tmp}/run"], tmp, data
    )


def _only_run(tmp: Path):
    client = MlflowClient(store_uri(tmp))
    exp = client.get_experiment_by_name("cvsweep")
    (run,) = client.search_runs([exp.experiment_id])
    return client, run


def test_sigterm_to_the_whole_group_still_records_the_run_killed(tmp_path, data_dir):
    # SLURM, `timeout` and a closed terminal signal every process of the job, the tracking
    # process included; it must stay up until the trainer has recorded the run as KILLED.
    proc = _start(tmp_path, data_dir)
    seen = read_until(proc, "step     16 |")
    os.killpg(proc.pid, signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    output = "".join(seen) + rest
    assert proc.returncode == 128 + signal.SIGTERM, output[-2000:]
    client, run = _only_run(tmp_path)
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"] == "interrupted"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")]
    assert 8 in steps and 16 in steps
    assert wait_group_gone(proc.pid), "a process of the run outlived it"


def test_tracking_process_writes_what_it_got_and_leaves_when_the_trainer_is_killed(
    tmp_path, data_dir
):
    proc = _start(tmp_path, data_dir)
    read_until(proc, "step     24 |")
    proc.kill()  # SIGKILL to the trainer only: nothing can run in it any more
    proc.communicate(timeout=60)  # returns once the tracking process let go of the output too
    assert wait_group_gone(proc.pid), "the tracking process outlived a killed trainer"
    client, run = _only_run(tmp_path)
    assert run.info.status == "RUNNING"  # an orphan: the next launch marks it KILLED
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")]
    assert {8, 16} <= set(steps)  # step 24 may have been printed but not yet sent


def _wait_until_stored(tmp: Path, key: str, step: int, timeout: float = 60.0) -> None:
    """Block until the store holds metric `key` at `step`.

    The console runs ahead of the tracking process, which writes asynchronously (on a busy
    machine it may not even have created the run when step 16 is printed). Reading the SQLite
    file directly keeps this check from racing the tracking process's own schema set-up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error):
            con = sqlite3.connect(f"file:{tmp / 'mlflow.db'}?mode=ro", uri=True, timeout=1)
            try:
                query = "SELECT 1 FROM metrics WHERE key = ? AND step = ?"
                if con.execute(query, (key, step)).fetchone():
                    return
            finally:
                con.close()
        time.sleep(0.05)
    raise AssertionError(f"the store never got {key} at step {step}")


def _tracking_process(trainer_pid: int) -> int:
    """The pid of the trainer's own tracking process."""
    (pid,) = [pid for pid, ppid in tracking_processes(trainer_pid) if ppid == trainer_pid]
    return pid


@pytest.mark.parametrize("required", [True, False])
def test_a_run_whose_tracking_was_lost_trains_on_and_exits_3_unless_optional(
    tmp_path, data_dir, required
):
    """The tracking process dies mid-run: training goes on and its files are complete; the
    exit code says the store is incomplete (3), or only warns with tracking.required=false."""
    args = [*LONG_RUN, "trainer.epochs=8", f"tracking.uri={store_uri(tmp_path)}"]
    args += [f"hydra.run.dir={tmp_path}/run", f"tracking.required={str(required).lower()}"]
    proc = start_train(args, tmp_path, data_dir)
    seen = read_until(proc, "step     16 |")
    _wait_until_stored(tmp_path, "test_acc", 8)  # mid-run in the store too, not only on screen
    os.kill(_tracking_process(proc.pid), signal.SIGKILL)
    rest, _ = proc.communicate(timeout=120)
    output = "".join(seen) + rest
    assert proc.returncode == (3 if required else 0), output[-3000:]
    assert "Traceback" not in output
    assert "warning: tracking: The tracking process (pid" in output
    assert "final test accuracy:" in output  # trained to the end
    assert (tmp_path / "run" / "model.pth").is_file()
    incomplete = "error: training finished and its files are complete, but the tracking store"
    assert (incomplete in output) == required
    client, run = _only_run(tmp_path)
    assert run.info.status == "RUNNING"  # never finished in the store: the next launch marks it
    if not required:
        return
    # The same command again (a new job folder): the run resumes from the state its own
    # folder holds, ahead of the store, and the store gets everything it missed.
    again = run_train(args[:-2], tmp_path / "again", data_dir)  # folder: again/run
    assert again.returncode == 0, again.stderr[-2000:]
    rid = run.info.run_id
    folder = tmp_path / "run"
    assert (
        f"resuming run {rid} (KILLED) from the checkpoint in its job folder {folder}"
        in again.stdout
    )
    assert "at step 256" in again.stdout  # 8 epochs of 32 mini-batches: all of it
    assert (tmp_path / "again" / "run" / "model.pth").is_file()
    assert (tmp_path / "again" / "run" / "checkpoint.pt").is_file()
    run = client.get_run(rid)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(rid, "test_acc")]
    assert sorted(steps) == list(range(8, 257, 8))  # every point once
    assert run.data.tags["output_dir"] == str(tmp_path / "again" / "run")


def test_a_sweep_goes_on_tracking_after_its_tracking_process_is_lost(tmp_path, data_dir):
    """Jobs run one after another in the launching process: the tracking process dies during
    the first, which trains on and loses its writes; the second job and the comparison report
    get a new one, instead of failing on the dead one without training."""
    args = ["-m", "optimizer=sgd,adam", *LONG_RUN, "trainer.epochs=2"]
    args += [f"tracking.uri={store_uri(tmp_path)}", f"hydra.sweep.dir={tmp_path}/sweep"]
    proc = start_train(args, tmp_path, data_dir)
    seen = read_until(proc, "step     16 |")
    _wait_until_stored(tmp_path, "test_acc", 8)
    os.kill(_tracking_process(proc.pid), signal.SIGKILL)
    rest, _ = proc.communicate(timeout=180)
    output = "".join(seen) + rest
    assert proc.returncode == 3, output[-3000:]  # the first job's record is incomplete
    assert "Traceback" not in output
    assert "was killed (SIGKILL)" in output
    assert "did not finish" not in output.split("comparison report:")[-1]  # both jobs trained
    results = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/job_result.json")]
    assert sorted(r["status"] for r in results) == ["FINISHED", "FINISHED"]
    client = MlflowClient(store_uri(tmp_path))
    exp = client.get_experiment_by_name("cvsweep")
    runs = client.search_runs([exp.experiment_id])
    by_optimizer = {r.data.params.get("optimizer"): r for r in runs}
    assert by_optimizer["sgd"].info.status == "RUNNING"  # lost with its tracking process
    adam = by_optimizer["adam"]
    assert adam.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(adam.info.run_id, "test_acc")] == list(
        range(8, 65, 8)
    )
    assert (tmp_path / "sweep" / "comparison.md").is_file()
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FAILED"  # one of its runs is not FINISHED in the store


@pytest.mark.parametrize("what", ["job", "sweep"])
def test_a_tracking_process_lost_before_anything_was_written_is_replaced(tmp_path, data_dir, what):
    """Killed while the command still starts (before the store answered): nothing was written,
    so the job (or the sweep, for its parent run) starts another and is tracked in full,
    instead of failing before training."""
    args = [*QUICK, f"tracking.uri={store_uri(tmp_path)}"]
    if what == "sweep":
        args = ["-m", *args, "optimizer=adam", f"hydra.sweep.dir={tmp_path}/sweep"]
    else:
        args += [f"hydra.run.dir={tmp_path}/run"]
    # A store that exists already: the job waits for its answer (a new one it need not).
    earlier = run_train(
        [*QUICK, "seed=1", f"tracking.uri={store_uri(tmp_path)}"], tmp_path, data_dir
    )
    assert earlier.returncode == 0, earlier.stderr[-2000:]
    proc = start_train(args, tmp_path, data_dir)
    deadline = time.time() + 60
    while not (found := tracking_processes(proc.pid)) and time.time() < deadline:
        time.sleep(0.005)
    assert found, "no tracking process started"
    os.kill(found[0][0], signal.SIGKILL)
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output
    assert re.search(
        r"note: the tracking process \(pid \d+\) was killed \(SIGKILL\) before "
        rf"(this job wrote anything|the {what} wrote anything|anything was written) to the "
        "store: a new one is started",
        output,
    ), output[-3000:]
    assert "warning" not in output
    printed = re.search(r"mlflow run: (\w+)", output)
    assert printed is not None, output[-3000:]
    client = MlflowClient(store_uri(tmp_path))
    run = client.get_run(printed[1])
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")]
    assert steps == [4, 8]  # 512 images in batches of 64, a point every 4
    if what == "sweep":
        assert (tmp_path / "sweep" / "comparison.md").is_file()
        parent = client.get_run(run.data.tags["mlflow.parentRunId"])
        assert parent.info.status == "FINISHED"


def test_a_tracking_process_dead_as_it_started_is_replaced_with_a_note(monkeypatch, capsys):
    """Killed in the instant between its start and its first message (seen once in CI): the
    next user of the shared process gets a new one and the console says why, as when the death
    is found by a job or a sweep."""
    from cvsweep import store_proxy

    dead = store_proxy.StoreProxy()
    dead.process.kill()
    dead.process.wait()
    with pytest.raises(TrackingError, match="was killed"):
        dead.post("warm")  # what shared_proxy sends first: the pipe is broken
    monkeypatch.setattr(store_proxy, "_shared", dead)
    fresh = store_proxy.shared_proxy()
    try:
        assert fresh is not dead and fresh.process.poll() is None
        said = capsys.readouterr().out
        assert (
            f"note: the tracking process (pid {dead.process.pid}) was killed (SIGKILL) before "
            "anything was written to the store: a new one is started"
        ) in said
    finally:
        fresh.discard()
        dead.discard()


def test_the_trainer_never_imports_mlflow(tmp_path, data_dir):
    # -X importtime reports this interpreter's imports only; the tracking process is another.
    proc = run_train(
        [*QUICK, f"tracking.uri={store_uri(tmp_path)}"],
        tmp_path,
        data_dir,
        python_flags=("-X", "importtime"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
    imported = [name for name in imported if name and not name.startswith("import time")]
    assert "torch" in imported
    assert not [name for name in imported if name.split(".")[0] in ("mlflow", "sqlalchemy")]
    _, run = _only_run(tmp_path)
    assert run.info.status == "FINISHED"
    printed = re.search(r"final test accuracy: ([\d.]+)%", proc.stdout)
    assert printed is not None
    assert 100 * run.data.metrics["final_test_acc"] == pytest.approx(float(printed[1]), abs=0.01)


@pytest.mark.slow
def test_bench_tracking_prints_the_overhead(tmp_path, data_dir):
    out = tmp_path / "tracking.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.tracking",
            "--rounds",
            "1",
            "--points",
            "50",
            "--only",
            "tiny",
            "--json",
            str(out),
        ],
        cwd=REPO,
        env=cli_env(data_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| config | off s (median) | on s (median) | overhead s | overhead % |" in proc.stdout
    assert "Per log point (50 points of 5 metrics" in proc.stdout
    found = json.loads(out.read_text())
    (summary,) = found["summary"]
    assert summary["off_s"] > 0 and summary["on_s"] > 0
    assert found["per_point"]["trainer_us_per_point"] > 0
    assert {r["tracking"] for r in found["per_run"]} == {True, False}


def test_a_run_finished_while_orphans_are_looked_for_stays_finished(tmp_path):
    """Another launch lists the RUNNING runs; one of them finishes and its process exits before
    the pid check. The stale listing must not turn that FINISHED run into a KILLED one."""
    import socket

    from cvsweep.tracking import mark_orphans

    client = MlflowClient(store_uri(tmp_path))
    exp = client.create_experiment("cvsweep")
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    tags = {"cvsweep.host": socket.gethostname(), "cvsweep.pid": gone.stdout.strip()}
    finished = client.create_run(exp, tags=tags).info.run_id
    orphan = client.create_run(exp, tags=tags).info.run_id
    stale = client.search_runs([exp], filter_string="attributes.status = 'RUNNING'")
    client.set_terminated(finished, "FINISHED")  # ...between the listing and the pid check

    class StaleListing:
        def __getattr__(self, name):
            return getattr(client, name)

        def search_runs(self, *args, **kwargs):
            return stale

    assert mark_orphans(StaleListing(), exp) == [orphan]
    assert client.get_run(finished).info.status == "FINISHED"
    assert "cvsweep.orphaned" not in client.get_run(finished).data.tags
    assert client.get_run(orphan).info.status == "KILLED"


class _RecordingProxy:
    """Stands in for the tracking process: keeps what a tracker posts."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, tuple]] = []

    def post(self, op: str, *args) -> None:
        self.posted.append((op, args))

    def failures(self) -> list[str]:
        return []


def test_a_resumed_run_sends_no_point_the_store_already_has():
    from cvsweep.store_proxy import ProxyTracker

    proxy = _RecordingProxy()
    # The killed attempt had logged test_acc up to step 20 and, at its very end, its final
    # metrics at step 48 (the status was what it could not write).
    logged = {"test_acc": [4, 8, 12, 16, 20], "final_test_acc": [48]}
    tracker = ProxyTracker(proxy, "sqlite:///x.db", "run1", logged_steps=logged)  # type: ignore[arg-type]
    tracker.log_metrics({"test_acc": 0.5, "lr": 0.1}, step=20)  # recomputed after the resume
    tracker.log_metrics({"test_acc": 0.6}, step=24)
    tracker.finish("FINISHED", metrics={"final_test_acc": 0.9, "train_time_s": 3.0}, step=48)
    sent = [(op, args[2]) for op, args in proxy.posted]
    assert sent[0] == ("metrics", [("lr", 0.1, sent[0][1][0][2], 20)])
    assert sent[1] == ("metrics", [("test_acc", 0.6, sent[1][1][0][2], 24)])
    finish_op, finish_args = proxy.posted[2]
    assert finish_op == "finish_run" and finish_args[3] == {"train_time_s": 3.0}
    # A hole in the store's history (writes lost while a server was away) is filled.
    proxy = _RecordingProxy()
    tracker = ProxyTracker(proxy, "sqlite:///x.db", "run1", logged_steps={"test_acc": [4, 16]})  # type: ignore[arg-type]
    for step in (4, 8, 12, 16):
        tracker.log_metrics({"test_acc": step / 100}, step=step)
    assert [args[2][0][3] for _, args in proxy.posted] == [8, 12]


def test_a_second_launch_of_a_running_config_leaves_the_live_run_alone(tmp_path, data_dir):
    """The same command in a second terminal while the first still trains (with a checkpoint
    uploaded): it must start its own run, not resume the live one (two writers, one history)."""
    args = [*LONG_RUN, "trainer.epochs=3", f"tracking.uri={store_uri(tmp_path)}"]
    first = start_train([*args, f"hydra.run.dir={tmp_path}/first"], tmp_path, data_dir)
    try:
        read_until(first, "epoch   2/3")  # epoch 1's checkpoint was written and sent
        os.kill(first.pid, signal.SIGSTOP)  # alive, but paused: its tracking process goes on
        # The tracking process may still be creating the store's tables (it works through
        # its queue behind training): open it under the same lock, as cvsweep does.
        # On a loaded machine it may not even have made the experiment and run yet.
        client = client_for(store_uri(tmp_path))
        deadline = time.monotonic() + 60
        run = None
        while time.monotonic() < deadline:
            found = client.get_experiment_by_name("cvsweep")
            runs = client.search_runs([found.experiment_id]) if found else []
            if runs:
                exp, (run,) = found.experiment_id, runs
                if run.data.tags.get("cvsweep.checkpoint_epoch") == "1":
                    break
            time.sleep(0.2)
        assert run is not None, "no run in the store after 60 s"
        assert run.data.tags.get("cvsweep.checkpoint_epoch") == "1"
        second = run_train(args, tmp_path / "second", data_dir)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(first.pid, signal.SIGCONT)
    rest, _ = first.communicate(timeout=120)
    assert first.returncode == 0, rest[-2000:]
    assert second.returncode == 0, second.stderr[-2000:]
    live = run.info.run_id
    note = f"note: run {live} of the same config is still RUNNING (pid {first.pid} on this host)"
    assert note in second.stdout
    assert "resuming run" not in second.stdout
    runs = client.search_runs([exp])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for r in runs:  # each run has one writer: every point once
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "test_acc")]
        assert sorted(steps) == list(range(8, 97, 8)), (r.info.run_id, steps)


def test_a_running_run_of_another_host_is_live_until_it_goes_quiet(monkeypatch):
    from types import SimpleNamespace

    from cvsweep import tracking

    now_ms = time.time() * 1000

    def running_elsewhere() -> SimpleNamespace:
        info = SimpleNamespace(run_id="r1", start_time=now_ms - 3600_000)
        tags = {"cvsweep.host": "another-node", "cvsweep.pid": "123"}
        return SimpleNamespace(info=info, data=SimpleNamespace(tags=tags, metrics={"lr": 0.1}))

    class Client:
        def __init__(self, seconds_ago: float) -> None:
            self.ts = now_ms - seconds_ago * 1000

        def get_metric_history(self, run_id, key):
            return [
                SimpleNamespace(timestamp=now_ms - 3600_000),
                SimpleNamespace(timestamp=self.ts),
            ]

    recent = tracking.live_owner(Client(60), running_elsewhere())
    assert recent is not None and recent.startswith("pid 123 on host another-node, last write")
    quiet = tracking.STALE_AFTER_S + 60
    assert tracking.live_owner(Client(quiet), running_elsewhere()) is None


def test_a_job_folder_checkpoint_is_used_only_when_it_is_this_runs(tmp_path, capsys):
    """Another config's state (a reused folder), or one whose history disagrees with the
    store, is not resumed from; a matching one is, and is copied into the new job folder."""
    import torch

    from cvsweep.job_store import local_state

    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    history = [{"step": 8, "test_acc": 0.5}, {"step": 16, "test_acc": 0.75}]
    path = old / "checkpoint.pt"
    torch.save({"config_hash": "abc", "step": 16, "history": history}, path)
    found = {"local_checkpoint": str(path), "logged_steps": {"test_acc": [8]}, "last_test_acc": 0.5}
    assert local_state(found, "other", new) is None
    assert local_state({**found, "last_test_acc": 0.6}, "abc", new) is None
    assert local_state({**found, "logged_steps": {"test_acc": [8, 24]}}, "abc", new) is None
    assert not (new / "checkpoint.pt").exists()
    state = local_state(found, "abc", new)
    assert state is not None and state["step"] == 16
    assert (new / "checkpoint.pt").read_bytes() == path.read_bytes()
    # A model.pth (weights only) put in the state's place is not a state to resume from.
    other = tmp_path / "model_as_checkpoint.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, other)
    assert local_state({**found, "local_checkpoint": str(other)}, "abc", tmp_path) is None
    said = capsys.readouterr().out
    assert (
        f"note: the checkpoint {other} cannot be read (it is not a cvsweep training state" in said
    )


def _stop_at_step_40(tmp: Path, data: Path, args: list[str]) -> None:
    """Train ARGS in tmp/first and stop it as `timeout` or a scheduler does, at step 40."""
    first = start_train([*args, f"hydra.run.dir={tmp}/first"], tmp, data)
    read_until(first, "step     40 |")
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM


def test_a_damaged_job_folder_checkpoint_is_passed_over_for_the_stores(tmp_path, data_dir):
    """The stopped run's own folder holds a damaged state (here: random bytes): the relaunch
    says so in one line and resumes from the state the store got as the run stopped."""
    args = [*LONG_RUN, "trainer.epochs=3", f"tracking.uri={store_uri(tmp_path)}"]
    _stop_at_step_40(tmp_path, data_dir, args)
    damaged = tmp_path / "first" / "checkpoint.pt"
    damaged.write_bytes(os.urandom(2000))
    again = run_train(args, tmp_path / "again", data_dir)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "Traceback" not in again.stdout + again.stderr
    (note,) = [line for line in again.stdout.splitlines() if str(damaged) in line]
    assert note.startswith(f"note: the checkpoint {damaged} cannot be read (torch cannot load")
    assert note.endswith("); not resuming from it")
    client, run = _only_run(tmp_path)
    resumed = re.search(
        rf"resuming run {run.info.run_id} \(KILLED\) from its checkpoint at step (\d+)",
        again.stdout,
    )
    assert resumed is not None, again.stdout[:3000]
    assert int(resumed[1]) >= 40  # the state uploaded as it stopped, not the folder's
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")]
    assert sorted(steps) == list(range(8, 97, 8))  # every point once


def test_a_dead_owners_pid_taken_by_another_process_is_not_an_owner():
    """A container restarted under the same host name often gives its new trainer the dead
    one's pid: the process's start time tells them apart."""
    from cvsweep.tracking import owner_alive, owner_tags, process_token

    mine = owner_tags(os.getpid())
    assert owner_alive(mine)
    assert mine["cvsweep.proc"] == process_token(os.getpid()) != ""
    reused = {**mine, "cvsweep.proc": mine["cvsweep.proc"].rsplit(":", 1)[0] + ":1"}
    assert not owner_alive(reused)  # same pid, another process
    assert owner_alive({k: v for k, v in mine.items() if k != "cvsweep.proc"})  # older tags


def test_two_launches_at_once_do_not_both_resume_the_same_run(tmp_path, data_dir):
    """A stopped run, then the same command twice at the same moment: one resumes the run,
    the other trains a run of its own; no point is written twice."""
    args = [*LONG_RUN, "trainer.epochs=3", f"tracking.uri={store_uri(tmp_path)}"]
    _stop_at_step_40(tmp_path, data_dir, args)
    client, stopped = _only_run(tmp_path)
    rid = stopped.info.run_id
    launches = [
        start_train([*args, f"hydra.run.dir={tmp_path}/{name}"], tmp_path, data_dir)
        for name in ("a", "b")
    ]
    outputs = [proc.communicate(timeout=300)[0] for proc in launches]
    assert [proc.returncode for proc in launches] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    resumed = [out for out in outputs if f"resuming run {rid}" in out]
    assert len(resumed) == 1, [o[:1500] for o in outputs]
    (other,) = [out for out in outputs if f"resuming run {rid}" not in out]
    assert f"note: run {rid} of the same config is" in other
    exp = client.get_experiment_by_name("cvsweep").experiment_id
    runs = client.search_runs([exp])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for r in runs:
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "test_acc")]
        assert sorted(steps) == list(range(8, 97, 8)), (r.info.run_id, steps)


def test_a_resumed_run_writes_the_params_its_first_attempt_could_not(tmp_path, data_dir):
    """Params are written once (MLflow refuses to change one): a resumed run sends only the
    ones the store lacks, e.g. those lost when the store went away right after the run began."""
    args = [*LONG_RUN, "trainer.epochs=2", f"tracking.uri={store_uri(tmp_path)}"]
    _stop_at_step_40(tmp_path, data_dir, args)
    client, stopped = _only_run(tmp_path)
    rid, params = stopped.info.run_id, stopped.data.params
    assert params["optimizer.lr"] and params["optimizer"] == "adam"
    state = torch.load(tmp_path / "first" / "checkpoint.pt", weights_only=False)
    assert state["batch"] > 0 and len(state["epoch_times"]) == 1  # stopped inside epoch 2
    before_stop = state["elapsed_s"] - state["epoch_times"][0]
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # the writes the store never got
        db.execute("DELETE FROM params WHERE run_uuid = ? AND key LIKE 'optimizer%'", (rid,))
    assert not any(k.startswith("optimizer") for k in client.get_run(rid).data.params)
    again = run_train(args, tmp_path / "again", data_dir)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"resuming run {rid}" in again.stdout
    run = client.get_run(rid)
    assert run.info.status == "FINISHED"
    assert run.data.params == params  # the lost ones back, the others unchanged
    # Epoch 2 was trained in two parts: its time is both, and its throughput the whole epoch's.
    (epoch2,) = [m for m in client.get_metric_history(rid, "epoch_time_s") if m.step == 2]
    (speed,) = [m for m in client.get_metric_history(rid, "samples_per_s") if m.step == 2]
    assert epoch2.value > before_stop
    final = torch.load(tmp_path / "again" / "run" / "checkpoint.pt", weights_only=False)
    assert sum(final["epoch_times"]) == pytest.approx(final["elapsed_s"])  # no time unowned
    assert epoch2.value == pytest.approx(final["epoch_times"][1])
    assert speed.value * epoch2.value == pytest.approx(32 * 64, rel=1e-6)
