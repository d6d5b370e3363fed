"""What lands in MLflow for runs and sweeps, read back through MlflowClient only."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from .conftest import (
    QUICK,
    cli_env,
    read_until,
    run_cvsweep,
    run_train,
    start_train,
    store_uri,
    wait_group_gone,
)

# The tests share a module-scoped fixture: pytest-xdist runs them all on one worker.
pytestmark = pytest.mark.xdist_group("tracking")

RUN_ARTIFACTS = {
    "shape_report.md",
    "shape_report.json",
    "curves.png",
    "model.pth",
    "checkpoint/checkpoint.pt",
    "config/config.yaml",
    "config/overrides.yaml",
    "config/hydra.yaml",
}


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            found |= _artifacts(client, run_id, item.path)
        else:
            found.add(item.path)
    return found


def _runs(client: MlflowClient) -> list:
    exp = client.get_experiment_by_name("cvsweep")
    return client.search_runs([exp.experiment_id], max_results=100)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("sweep")
    proc = run_train(
        [
            "-m",
            "optimizer=sgd,adam",
            "augment=none,rot_flip",
            *QUICK,
            f"tracking.uri={store_uri(tmp)}",
        ],
        tmp,
        data_dir,
        timeout=600,
        # MLflow's own variable for the experiment is not cvsweep's setting: said, not obeyed
        env=cli_env(data_dir, MLFLOW_EXPERIMENT_NAME="elsewhere"),
    )
    return tmp, proc


def test_sweep_logs_parent_and_four_children(sweep):
    tmp, proc = sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(store_uri(tmp))
    exp = client.get_experiment_by_name("cvsweep")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.get_experiment_by_name("elsewhere") is None
    assert (
        proc.stdout.count(
            "note: MLFLOW_EXPERIMENT_NAME=elsewhere is not read: this run is logged in experiment "
            "'cvsweep'; choose the experiment with tracking.experiment=elsewhere\n"
        )
        == 4
    )
    runs = _runs(client)
    parents = [r for r in runs if r.data.tags.get("cvsweep.sweep") == "true"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name.startswith("sweep: optimizer=sgd,adam augment=none,rot_flip")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4
    assert {r.info.status for r in children} == {"FINISHED"}
    combos = {(r.data.params["optimizer"], r.data.params["augment"]) for r in children}
    assert combos == {("sgd", "none"), ("sgd", "rot_flip"), ("adam", "none"), ("adam", "rot_flip")}
    for r in children:
        p, t, m = r.data.params, r.data.tags, r.data.metrics
        assert p["dataset"] == "mnist" and p["model"] == "cnn" and p["schedule"] == "onecycle"
        assert p["trainer.batch_size"] == "64" and p["model.layers.0.out"] == "16"
        assert r.info.run_name == f"optimizer={p['optimizer']} augment={p['augment']} " + " ".join(
            QUICK
        )
        for tag in ("config_hash", "group_key", "command", "job_num", "device", "git_commit"):
            assert t.get(tag), tag
        assert t["device"] == "cpu"
        assert t["command"].startswith("python train.py optimizer=")
        for key in ("test_acc", "lr", "train_acc", "train_loss", "test_loss"):
            history = client.get_metric_history(r.info.run_id, key)
            assert len(history) >= 2, key
            assert sorted(h.step for h in history) == [4, 8]
        for key in (
            "final_test_acc",
            "best_test_acc",
            "train_time_s",
            "epoch_time_s",
            "samples_per_s",
        ):
            assert key in m, key
        assert _artifacts(client, r.info.run_id) >= RUN_ARTIFACTS
    parent_files = _artifacts(client, parent.info.run_id)
    assert {
        "comparison.md",
        "comparison.csv",
        "comparison_optimizer.png",
        "comparison_augment.png",
    } <= parent_files


def test_sweep_folder_holds_jobs_and_report(sweep):
    tmp, proc = sweep
    folder = tmp / "multirun"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    for job in "0123":
        assert (folder / job / "model.pth").is_file()
    csv_text = (folder / "comparison.csv").read_text()
    assert csv_text.count("FINISHED") == 4
    assert "batches_to_90" in csv_text.splitlines()[0]
    assert "| sweep: optimizer=sgd,adam" not in proc.stdout  # title is a heading, not a row
    assert "# sweep: optimizer=sgd,adam augment=none,rot_flip" in proc.stdout


def test_injected_failure_marks_run_failed_with_traceback(tmp_path, data_dir):
    proc = run_train(
        [*QUICK, "trainer.fault_at_step=3", f"tracking.uri={store_uri(tmp_path)}"],
        tmp_path,
        data_dir,
    )
    assert proc.returncode == 1
    assert "injected fault at mini-batch 3" in proc.stdout + proc.stderr
    client = MlflowClient(store_uri(tmp_path))
    (run,) = _runs(client)
    assert run.info.status == "FAILED"
    assert "injected fault" in run.data.tags["failure_reason"]
    assert "traceback.txt" in _artifacts(client, run.info.run_id)


def test_non_finite_loss_fails_with_reason_and_keeps_no_nan_weights(tmp_path, data_dir):
    proc = run_train(
        [
            *QUICK,
            "optimizer=sgd",
            "optimizer.lr=1e6",
            "schedule=constant",
            f"tracking.uri={store_uri(tmp_path)}",
        ],
        tmp_path,
        data_dir,
    )
    assert proc.returncode == 1
    assert "Non-finite loss at mini-batch" in proc.stdout
    client = MlflowClient(store_uri(tmp_path))
    (run,) = _runs(client)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "non_finite_loss"
    assert int(run.data.tags["failure_step"]) >= 1
    assert f"mlflow run: {run.info.run_id} (FAILED)\n" in proc.stdout  # was not said
    assert not (tmp_path / "run" / "model.pth").exists()
    assert "No weights were saved (none were good yet)" in proc.stdout
    assert "were kept" not in proc.stdout


def test_one_failing_child_does_not_stop_the_sweep(tmp_path, data_dir):
    proc = run_train(
        [
            "-m",
            "optimizer=sgd,adam",
            "trainer.fault_at_step=null,3",
            *QUICK,
            f"tracking.uri={store_uri(tmp_path)}",
        ],
        tmp_path,
        data_dir,
        timeout=600,
    )
    assert proc.returncode == 1
    assert "2 of 4 jobs did not finish" in proc.stderr
    client = MlflowClient(store_uri(tmp_path))
    children = [r for r in _runs(client) if r.data.tags.get("mlflow.parentRunId")]
    status = {r.data.params["trainer.fault_at_step"]: set() for r in children}
    for r in children:
        status[r.data.params["trainer.fault_at_step"]].add(r.info.status)
    assert status == {"null": {"FINISHED"}, "3": {"FAILED"}}
    report = (tmp_path / "multirun" / "comparison.md").read_text()
    assert "**2 run(s) did not finish:**" in report
    assert report.count("FAILED (RuntimeError: injected fault") == 2


def _sigterm_at_step_16(args: list[str], tmp: Path, data: Path) -> str:
    """Start a run, SIGTERM the trainer once step 16 is printed; its output, exit 143 checked."""
    proc = start_train(args, tmp, data)
    seen = read_until(proc, "step     16 |")
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    output = "".join(seen) + rest
    assert proc.returncode == 128 + signal.SIGTERM, output[-2000:]
    return output


def test_sigterm_marks_run_killed_and_saves_state(tmp_path, data_dir):
    args = [
        "trainer.epochs=50",
        "dataset.train_limit=2048",
        "dataset.test_limit=500",
        "trainer.log_every=8",
        "trainer.progress=off",
        f"tracking.uri={store_uri(tmp_path)}",
        f"hydra.run.dir={tmp_path}/run",
    ]
    output = _sigterm_at_step_16(args, tmp_path, data_dir)
    assert "Interrupted by SIGTERM" in output
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    client = MlflowClient(store_uri(tmp_path))
    (run,) = _runs(client)
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"] == "interrupted"
    # the id that rerun, evaluate and the UI take, and how to go on
    resumes = "(KILLED; the same command resumes it from the state saved)"
    assert f"mlflow run: {run.info.run_id} {resumes}" in output


def test_a_stopped_run_whose_saved_state_is_gone_is_trained_anew_saying_why(tmp_path, data_dir):
    """Its checkpoint artifact and its job folder deleted: the store itself is fine, so the
    warning names the missing artifact, and does not advise moving the store aside."""
    args = ["trainer.epochs=2", "dataset.train_limit=2048", "dataset.test_limit=500"]
    args += ["trainer.log_every=8", "trainer.progress=off", f"tracking.uri={store_uri(tmp_path)}"]
    _sigterm_at_step_16([*args, f"hydra.run.dir={tmp_path}/run"], tmp_path, data_dir)
    (stopped,) = _runs(MlflowClient(store_uri(tmp_path)))
    shutil.rmtree(tmp_path / "mlartifacts")
    shutil.rmtree(tmp_path / "run")
    again = run_train(args, tmp_path, data_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    warning = (
        f"warning: cannot resume run {stopped.info.run_id}: its checkpoint/checkpoint.pt artifact "
        f"cannot be downloaded from {store_uri(tmp_path)} ("
    )
    assert warning in again.stdout, again.stdout[-2000:]
    assert "; starting a new run" in again.stdout and "mv " not in again.stdout
    assert "final test accuracy" in again.stdout


def test_sigterm_while_a_job_sets_up_is_said_and_fails_no_run(tmp_path, data_dir):
    """SIGTERM as the shape report is printed, most often before the engine holds it: that
    ended the command silently, and a run made by then was left FAILED with no reason."""
    args = [*QUICK, "dataset.train_limit=4096", f"tracking.uri={store_uri(tmp_path)}"]
    proc = start_train([*args, f"hydra.run.dir={tmp_path}/run"], tmp_path, data_dir)
    seen = read_until(proc, "Shape report")
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    output = "".join(seen) + rest
    assert proc.returncode == 128 + signal.SIGTERM, output[-2000:]
    assert "Traceback" not in output
    # Said wherever it lands: outside the job, in its set-up, or (a moment later) in training.
    assert "Interrupted by SIGTERM" in output, output[-2000:]
    for run in _runs(MlflowClient(store_uri(tmp_path))):
        assert run.info.status != "FAILED", run.data.tags


@pytest.mark.parametrize("delay", [0.2, 0.6, 1.2, 2.0])
def test_ctrl_c_while_starting_ends_cleanly(tmp_path, data_dir, delay):
    """A terminal's Ctrl-C (the whole group) at any moment of start-up: exit 130 with one line,
    never an import traceback or an abort from inside torch's import; nothing left running."""
    args = [*QUICK, "trainer.epochs=20", f"tracking.uri={store_uri(tmp_path)}"]
    proc = start_train([*args, f"hydra.run.dir={tmp_path}/run"], tmp_path, data_dir)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-3000:]
    assert "Traceback" not in output and "terminate called" not in output, output[-3000:]
    assert "Interrupted by SIGINT" in output
    assert wait_group_gone(proc.pid)


def test_ctrl_c_after_a_jobs_last_step_keeps_it_finished_and_stops_the_sweep(tmp_path, data_dir):
    """Ctrl-C as a job finishes: the job is complete and recorded so (run, result file, summary),
    the press is not lost either: no further job starts, and the exit code says Ctrl-C."""
    args = ["-m", "optimizer=sgd,adam", *QUICK, f"tracking.uri={store_uri(tmp_path)}"]
    proc = start_train([*args, f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path, data_dir)
    seen = read_until(proc, "batch     8/8")  # job #0's last step (8 steps, one epoch)
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    output = "".join(seen) + rest
    assert proc.returncode == 130, output[-3000:]
    assert "final test accuracy:" in output and "Traceback" not in output, output[-3000:]
    assert "the sweep was stopped (Ctrl-C) with 1 of 2 jobs done." in output, output[-3000:]
    assert "#1 :" not in output
    assert json.loads((tmp_path / "sweep" / "0" / "job_result.json").read_text())["status"] == (
        "FINISHED"
    )
    client = MlflowClient(store_uri(tmp_path))
    (job,) = [r for r in _runs(client) if r.data.tags.get("config_hash")]
    assert job.info.status == "FINISHED" and "final_test_acc" in job.data.metrics


def test_a_reused_sweep_folder_reports_only_this_sweeps_jobs(tmp_path, data_dir):
    """A fixed hydra.sweep.dir used again: the earlier sweep's job folders and its stop are not
    this sweep's; its report, run list and exit code cover the jobs it launched."""
    sweep_dir = tmp_path / "multirun"  # run_train's fixed hydra.sweep.dir
    common = [*QUICK, f"tracking.uri={store_uri(tmp_path)}"]
    first = run_train(
        ["-m", "seed=0,1,2", "trainer.fault_at_step=null,5", *common], tmp_path, data_dir
    )
    assert first.returncode == 1, first.stdout[-2000:] + first.stderr[-2000:]
    assert "3 of 6 jobs did not finish" in first.stderr, first.stderr[-2000:]
    (sweep_dir / ".cvsweep-stop").touch()  # what a stopped parallel sweep leaves behind
    again = run_train(["-m", "seed=0,1", *common], tmp_path, data_dir)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert output.count("skipped: identical to finished run") == 2
    assert "sweep: 2 jobs ended" in output and "did not finish" not in output
    client = MlflowClient(store_uri(tmp_path))
    parents = [r for r in _runs(client) if r.data.tags.get("cvsweep.sweep") == "true"]
    latest = max(parents, key=lambda r: r.info.start_time)
    listed = json.loads(
        Path(
            client.download_artifacts(latest.info.run_id, "sweep_runs.json", str(tmp_path))
        ).read_text()
    )
    assert len(listed["run_ids"]) == 2, listed


def test_sigterm_without_tracking_says_nothing_will_resume_it(tmp_path, data_dir):
    args = ["trainer.epochs=50", "dataset.train_limit=2048", "dataset.test_limit=500"]
    args += ["trainer.log_every=8", "trainer.progress=off", "tracking.enabled=false"]
    output = _sigterm_at_step_16([*args, f"hydra.run.dir={tmp_path}/run"], tmp_path, data_dir)
    assert "note: this run was not tracked, so nothing resumes it" in output
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_a_stopped_sweep_without_tracking_does_not_promise_to_resume(tmp_path, data_dir):
    args = ["-m", "optimizer=sgd,adam", "trainer.epochs=50", "dataset.train_limit=2048"]
    args += ["dataset.test_limit=500", "trainer.log_every=8", "trainer.progress=off"]
    args += ["tracking.enabled=false", f"hydra.sweep.dir={tmp_path}/sweep"]
    output = _sigterm_at_step_16(args, tmp_path, data_dir)
    assert "This sweep was not tracked, so nothing is skipped or resumed" in output
    assert "finished jobs are skipped" not in output


def test_rerun_of_a_sweep_parent_says_what_to_rerun(sweep, data_dir):
    tmp, _ = sweep
    client = MlflowClient(store_uri(tmp))
    (parent,) = [r for r in _runs(client) if r.data.tags.get("cvsweep.sweep") == "true"]
    pid = parent.info.run_id
    proc = run_cvsweep(
        ["rerun", pid, "--tracking-uri", store_uri(tmp)], tmp, cli_env(data_dir), timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert f"Run {pid} is the parent run of a sweep" in proc.stderr
    assert f"cvsweep compare {pid}" in proc.stderr and "optimizer=sgd,adam" in proc.stderr
    assert len(_runs(client)) == 5  # nothing was trained or logged


def test_compare_rebuilds_the_report_from_the_store(sweep, data_dir):
    tmp, proc = sweep
    client = MlflowClient(store_uri(tmp))
    (parent,) = [r for r in _runs(client) if r.data.tags.get("cvsweep.sweep") == "true"]

    def compare(*args):
        return run_cvsweep(
            ["compare", *args, "--tracking-uri", store_uri(tmp)],
            tmp,
            cli_env(data_dir),
            timeout=120,
        )

    by_parent = compare(parent.info.run_id, "--by", "augment", "--out", str(tmp / "cmp1"))
    assert by_parent.returncode == 0, by_parent.stderr
    assert (tmp / "cmp1" / "comparison_augment.png").is_file()
    assert not (tmp / "cmp1" / "comparison_optimizer.png").exists()
    assert (tmp / "cmp1" / "comparison.csv").read_text().count("FINISHED") == 4
    by_experiment = compare("cvsweep", "--out", str(tmp / "cmp2"))
    assert by_experiment.returncode == 0, by_experiment.stderr
    assert "4 runs" in by_experiment.stdout
    unknown = compare("no-such-experiment")
    assert unknown.returncode == 2 and "neither a run id" in unknown.stderr


@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_and_the_same_command_resumes_it_exactly(tmp_path, data_dir):
    args = [
        "-m",
        "optimizer=sgd,adam",
        "trainer.epochs=2",
        "dataset.train_limit=2048",
        "dataset.test_limit=500",
        "trainer.log_every=8",
        "trainer.progress=off",
        f"tracking.uri={store_uri(tmp_path)}",
    ]
    proc = start_train([*args, f"hydra.sweep.dir={tmp_path}/first"], tmp_path, data_dir)
    seen = read_until(proc, "step     40 |")  # job #0, epoch 2 of 2 (32 steps per epoch)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    rest, _ = proc.communicate(timeout=120)
    output = "".join(seen) + rest
    assert proc.returncode == 130, output[-3000:]
    assert "Interrupted by SIGINT" in output and "Traceback" not in output
    assert "the sweep was stopped (Ctrl-C) with 0 of 2 jobs done, 1 interrupted" in output
    assert "#1 :" not in output  # the second job never started
    client = MlflowClient(store_uri(tmp_path))
    (parent,) = [r for r in _runs(client) if r.data.tags.get("cvsweep.sweep") == "true"]
    assert parent.info.status == "KILLED"
    (job,) = [r for r in _runs(client) if r.data.tags.get("config_hash")]
    assert job.info.status == "KILLED" and job.data.tags["failure_reason"] == "interrupted"

    again = run_train(args, tmp_path / "again", data_dir)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    resumed = re.search(
        rf"resuming run {job.info.run_id} \(KILLED\) .* at step (\d+)", again.stdout
    )
    assert resumed is not None, again.stdout[-3000:]
    assert 40 <= int(resumed.group(1)) < 64  # the exact mid-epoch state, not epoch 1's end
    run = client.get_run(job.info.run_id)
    assert run.info.status == "FINISHED" and "failure_reason" not in run.data.tags
    steps = [m.step for m in client.get_metric_history(job.info.run_id, "train_loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 64  # no gap, no point twice
    # The stopped sweep compared afterwards: its one run is shown FINISHED, and said why.
    cmp = run_cvsweep(
        ["compare", parent.info.run_id, "--tracking-uri", store_uri(tmp_path)],
        tmp_path,
        cli_env(data_dir),
        timeout=120,
    )
    assert cmp.returncode == 0, cmp.stderr
    assert (
        f"note: the sweep {parent.info.run_name!r} was stopped (interrupted) before all its "
        "jobs had finished:" in (cmp.stderr)
    )
    assert "1 run(s) it made, 1 of which finished after it stopped, resumed by a later launch" in (
        cmp.stderr
    )
