"""Hydra's joblib and submitit launchers and a tracking server run the same sweeps, losslessly."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cvsweep.identity import RESULT_FILE
from cvsweep.server import free_port, start_server, stop_server, wait_ready
from cvsweep.sweep import NOT_STARTED

from .conftest import (
    QUICK,
    db_uri,
    read_until,
    run_train,
    start_train,
    store_uri,
    tracking_processes,
)

pytestmark = pytest.mark.slow

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr")


def _check_sweep(uri: str, n_children: int, steps: list[int]) -> None:
    """One parent, n FINISHED children under it, every metric point of every child present."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("cvsweep")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("cvsweep.sweep") == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == n_children
    assert {r.info.status for r in children} == {"FINISHED"}
    for run in children:
        for key in METRICS:
            got = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert got == steps, (run.info.run_name, key, got)
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"comparison.md", "comparison.csv"} <= names


def _parallel_sweep(uri: str) -> list[str]:
    """A 2x2 sweep as four joblib workers, logging every mini-batch: many concurrent writes."""
    return [
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        "optimizer=sgd,adam",
        "augment=none,rot_flip",
        *QUICK,
        "trainer.log_every=1",
        f"tracking.uri={uri}",
    ]


def test_joblib_four_parallel_writers_lose_nothing(tmp_path, data_dir):
    # db_uri: a new store, made as a first command in a folder makes it
    proc = run_train(_parallel_sweep(db_uri(tmp_path)), tmp_path, data_dir, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_sweep(db_uri(tmp_path), 4, list(range(1, 9)))
    # Four jobs printing at once, unbuffered: each line whole and saying whose it is; each
    # job's train.log has its own lines as printed.
    lines = [line for line in proc.stdout.splitlines() if " step " in line]
    assert len(lines) == 4 * 8, proc.stdout[-3000:]
    for job in range(4):
        mine = [line for line in lines if line.startswith(f"[#{job}] epoch   1/1  batch ")]
        assert len(mine) == 8, lines
    assert all(line.count(" step ") == 1 for line in lines), lines
    log = (tmp_path / "multirun" / "0" / "train.log").read_text()
    assert re.search(r"(?m)^epoch   1/1  batch     8/8  step      8 \| ", log), log


def test_submitit_local_launcher(tmp_path, data_dir):
    proc = run_train(
        [
            "-m",
            "hydra/launcher=submitit_local",
            "optimizer=sgd,adam",
            *QUICK,
            f"tracking.uri={store_uri(tmp_path)}",
        ],
        tmp_path,
        data_dir,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_sweep(store_uri(tmp_path), 2, [4, 8])


def test_four_parallel_writers_through_a_tracking_server(tmp_path, data_dir):
    port = free_port()
    server = start_server(f"sqlite:///{tmp_path / 'srv' / 'mlflow.db'}", port=port)
    try:
        wait_ready(f"http://127.0.0.1:{port}", timeout=120, proc=server)
        uri = f"http://127.0.0.1:{port}"
        proc = run_train(_parallel_sweep(uri), tmp_path, data_dir, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        _check_sweep(uri, 4, list(range(1, 9)))
    finally:
        stop_server(server)


def _two_workers(tmp: Path, optimizers: str, train_limit: int = 60000) -> list[str]:
    """A joblib sweep on two workers whose jobs train long enough to be stopped mid-way.

    One worker may start training seconds before the other (it loads torch while the other
    still waits for a core), so a job stopped by a signal gets the whole training set: both
    are still training when the second one has printed its first lines."""
    return [
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        optimizers,
        "trainer.epochs=1",
        f"dataset.train_limit={train_limit}",
        "dataset.test_limit=500",
        "trainer.batch_size=8",
        "trainer.log_every=32",
        "trainer.progress=off",
        f"tracking.uri={store_uri(tmp)}",
        f"hydra.sweep.dir={tmp}/sweep",
    ]


def test_ctrl_c_in_a_joblib_sweep_lets_running_jobs_save_and_starts_no_other(tmp_path, data_dir):
    args = _two_workers(tmp_path, "optimizer=sgd,adam,adamw")
    proc = start_train(args, tmp_path, data_dir)
    seen = read_until(proc, "step     64 |", timeout=240, count=2)  # both workers training
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches every worker too
    rest, _ = proc.communicate(timeout=180)
    output = "".join(seen) + rest
    assert proc.returncode == 130, output[-3000:]
    assert "stopping: the running jobs save their state" in output
    assert output.count("Interrupted by SIGINT; state saved") == 2
    assert "the sweep was stopped (Ctrl-C) with 0 of 3 jobs done, 2 interrupted" in output
    results = {
        p.parent.name: json.loads(p.read_text())
        for p in (tmp_path / "sweep").glob(f"*/{RESULT_FILE}")
    }
    assert results["2"]["error"] == NOT_STARTED  # the queued job never trained
    assert not (tmp_path / "sweep" / "2" / "checkpoint.pt").exists()
    for job in ("0", "1"):
        assert results[job]["status"] == "KILLED"
        assert (tmp_path / "sweep" / job / "checkpoint.pt").is_file()


def test_a_joblib_sweep_whose_workers_lost_tracking_exits_3(tmp_path, data_dir):
    """Jobs in other processes: their lost writes reach the launching process's exit code."""
    args = _two_workers(tmp_path, "optimizer=sgd,adam", train_limit=4096)  # trains to the end
    proc = start_train(args, tmp_path, data_dir)
    # Both jobs training: a tracking process killed before its job wrote anything is replaced
    # (tests/test_tracking_process.py), and that job would lose nothing.
    seen = read_until(proc, "step     64 |", timeout=240, count=2)
    killed = [pid for pid, ppid in tracking_processes(proc.pid) if ppid != proc.pid]  # the workers'
    assert len(killed) == 2, f"the workers' tracking processes: {killed}"
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=240)
    output = "".join(seen) + rest
    assert proc.returncode == 3, output[-3000:]
    assert "error: training finished and its files are complete, but the tracking store" in output
    results = {
        p.parent.name: json.loads(p.read_text())
        for p in (tmp_path / "sweep").glob(f"*/{RESULT_FILE}")
    }
    assert {r["status"] for r in results.values()} == {"FINISHED"}, output[-3000:]  # both trained
    # A job that had already ended (its worker started seconds earlier) lost nothing; the lost
    # writes are those of jobs still training when their tracking processes were killed.
    before_kill = "".join(seen)
    ended = {job for job in results if f"job folder: {tmp_path / 'sweep' / job}" in before_kill}
    lost = {job for job, r in results.items() if r["tracking_problems"] > 0}
    assert lost and lost <= set(results) - ended, (results, output[-4000:])


def test_a_joblib_worker_killed_by_the_system_is_said_so_and_the_same_command_goes_on(
    tmp_path, data_dir
):
    """The out-of-memory killer takes one worker: joblib then stops the sweep and its other
    worker. The sweep says a worker died (not that a launcher setting is wrong) and that the
    same command goes on; it does, resuming what was cut and running what never started."""
    args = _two_workers(tmp_path, "optimizer=sgd,adam,adamw", train_limit=4096)
    proc = start_train(args, tmp_path, data_dir)
    seen = read_until(proc, "step     64 |", timeout=240, count=2)  # both workers training
    workers = sorted({ppid for _, ppid in tracking_processes(proc.pid) if ppid != proc.pid})
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    rest, _ = proc.communicate(timeout=180)
    output = "".join(seen) + rest
    assert proc.returncode == 1, output[-3000:]
    assert "A worker process died (killed by the system, e.g. out of memory" in output
    assert "hydra.launcher" not in output.split("A worker process died")[0].splitlines()[-1]
    assert "Run the same command again to go on" in output, output[-3000:]
    again = start_train(args, tmp_path, data_dir)  # the same command, the same sweep folder
    output, _ = again.communicate(timeout=240)
    assert again.returncode == 0, output[-3000:]
    # The runs the dead workers left RUNNING are said to be KILLED, by the sweep that found them.
    assert "was left RUNNING by a process that is gone: now KILLED" in output, output[-3000:]
    results = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob(f"*/{RESULT_FILE}")]
    # The other worker's job may have finished in the first command before joblib stopped it
    # (its epoch is short): the second command then skips it as identical to that run.
    statuses = [r["status"] for r in results]
    assert len(statuses) == 3 and set(statuses) <= {"FINISHED", "SKIPPED"}, results
    assert "FINISHED" in statuses, results  # at least the job the killed worker cut resumed
    client = MlflowClient(store_uri(tmp_path))
    exp = client.get_experiment_by_name("cvsweep").experiment_id
    runs = [r for r in client.search_runs([exp]) if "cvsweep.sweep" not in r.data.tags]
    # Each config has its finished run, and none is left looking as if it still trained.
    finished = sorted(r.data.params["optimizer"] for r in runs if r.info.status == "FINISHED")
    assert finished == ["adam", "adamw", "sgd"], [(r.info.status, r.data.params) for r in runs]
    assert "RUNNING" not in {r.info.status for r in runs}


def test_a_launcher_error_leaves_the_sweeps_parent_failed_not_finished(tmp_path, data_dir):
    """joblib refuses prefer=nosuch once the sweep's parent run exists: one paragraph names
    the launcher and its error (no traceback of its insides), and the parent says the sweep
    failed, and why, instead of looking like a finished sweep of no runs."""
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.prefer=nosuch", "seed=0,1", *QUICK]
    proc = run_train([*args, f"tracking.uri={store_uri(tmp_path)}"], tmp_path, data_dir)
    assert proc.returncode == 1, proc.stderr[-2000:]
    said = "error: the launcher (hydra/launcher=joblib) failed: ValueError: prefer=nosuch"
    assert said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "error: the sweep was stopped (exit code 1) with 0 of 2 jobs done" in proc.stderr
    assert "comparison report:" not in proc.stdout  # a report of no runs says nothing
    client = MlflowClient(store_uri(tmp_path))
    (parent,) = client.search_runs([client.get_experiment_by_name("cvsweep").experiment_id])
    assert parent.data.tags["cvsweep.sweep"] == "true" and parent.info.status == "FAILED"
    assert "prefer=nosuch" in parent.data.tags["failure_reason"]


@pytest.mark.parametrize(
    ("subdir", "taken"),
    [([], "1"), (["hydra.sweep.subdir=seed_${seed}"], "seed_1")],
)
def test_a_file_where_a_jobs_folder_goes_stops_the_sweep_before_it_starts(
    tmp_path, data_dir, subdir, taken
):
    """The numbered folders, and any other hydra.sweep.subdir layout (the job folders are
    named as the launcher will name them)."""
    (tmp_path / "multirun").mkdir()
    (tmp_path / "multirun" / taken).write_text("not a folder")
    args = ["-m", "seed=0,1", *subdir, *QUICK, f"tracking.uri={db_uri(tmp_path)}"]
    proc = run_train(args, tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"cannot write the output folder of job #1: {tmp_path}/multirun/{taken} is a" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr and not (tmp_path / "mlflow.db").exists()


def test_joblib_n_jobs_0_is_a_config_error(tmp_path, data_dir):
    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0", "seed=0,1", *QUICK]
    proc = run_train([*args, f"tracking.uri={db_uri(tmp_path)}"], tmp_path, data_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Invalid config value hydra.launcher.n_jobs=0" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "mlflow.db").exists()
