"""Rerun a logged run, skip finished runs, resume an interrupted one: exactly the same numbers."""

from __future__ import annotations

import csv
import signal

import pytest
import torch
from mlflow import MlflowClient

from .conftest import (
    QUICK,
    cli_env,
    read_until,
    run_cvsweep,
    run_train,
    start_cvsweep,
    start_train,
    store_uri,
    wait_group_gone,
)


def _cvsweep(args, tmp, data, timeout=300):
    return run_cvsweep(args, tmp, cli_env(data), timeout=timeout)


def _runs(client):
    exp = client.get_experiment_by_name("cvsweep")
    return client.search_runs([exp.experiment_id], max_results=100)


def _rerun_check(tmp, data, run_id: str, *overrides: str):
    """`cvsweep rerun RUN_ID [overrides] --check` against the test's store."""
    args = ["rerun", run_id, *overrides, "--check", "--tracking-uri", store_uri(tmp)]
    return _cvsweep(args, tmp, data)


def test_rerun_check_reproduces_a_logged_run(tmp_path, data_dir):
    first = run_train(
        [*QUICK, "augment=rot_flip", f"tracking.uri={store_uri(tmp_path)}"], tmp_path, data_dir
    )
    assert first.returncode == 0, first.stderr[-2000:]
    client = MlflowClient(store_uri(tmp_path))
    (original,) = _runs(client)
    proc = _rerun_check(tmp_path, data_dir, original.info.run_id)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "check passed: largest difference 0.000e+00" in proc.stdout
    assert "final_test_acc" in proc.stdout and "original" in proc.stdout
    reruns = [r for r in _runs(client) if r.data.tags.get("rerun_of") == original.info.run_id]
    assert len(reruns) == 1 and reruns[0].info.status == "FINISHED"
    assert reruns[0].data.params["augment"] == "rot_flip"
    # An override changes the numbers, and --check says so (overrides may follow the options).
    rid, uri = original.info.run_id, store_uri(tmp_path)
    chosen = tmp_path / "seed1"
    changed = _cvsweep(
        # a list item by its index, as train.py takes it (the rerun's overrides once failed
        # with "Cannot merge DictConfig with ListConfig")
        ["rerun", rid, "--check", "--tracking-uri", uri, "--out", str(chosen), "seed=1"]
        + ["model.layers.0.out=8"],
        tmp_path,
        data_dir,
    )
    assert changed.returncode == 1, changed.stdout[-2000:] + changed.stderr[-2000:]
    assert "check failed" in changed.stderr
    assert "| conv1 | Conv2d+ReLU | (16, 1, 28, 28) | (16, 8, 24, 24) |" in changed.stdout
    assert (chosen / "model.pth").is_file() and (chosen / ".hydra" / "config.yaml").is_file()
    # Where ./outputs cannot be made, the rerun says so before training, and --out is the way.
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "outputs").write_text("a file where the folder would go")
    refused = _cvsweep(["rerun", rid, "--tracking-uri", uri], blocked, data_dir)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "the rerun's job folder outputs/rerun/" in refused.stderr
    assert "Choose another folder with --out DIR." in refused.stderr
    assert "Traceback" not in refused.stderr and "training cnn" not in refused.stdout
    unknown = _cvsweep(
        ["rerun", rid, "--tracking-uri", uri, "+optimizer.lrr=1"], tmp_path, data_dir
    )
    assert unknown.returncode == 2, unknown.stderr
    assert unknown.stderr.startswith(
        "error: Unknown config key optimizer.lrr: the adam optimizer has no setting 'lrr'; "
    ), unknown.stderr
    assert "Did you mean optimizer.lr?" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1, unknown.stderr  # one paragraph
    by_name = _cvsweep(  # (an id in capitals names the same run)
        ["rerun", rid.upper(), "--tracking-uri", uri, "model.layers.conv1.out=8"],
        tmp_path,
        data_dir,
    )
    assert by_name.returncode == 2 and by_name.stderr == (
        "error: Invalid config key model.layers.conv1.out: model.layers is a list, so each layer "
        "in it is addressed by its index, not its name; conv1 is model.layers.0 in model=cnn: "
        "write model.layers.0.out=8.\n"
    ), by_name.stderr
    past_end = _cvsweep(
        ["rerun", rid, "--tracking-uri", uri, "model.layers.9.out=3"], tmp_path, data_dir
    )
    assert past_end.returncode == 2 and past_end.stderr == (
        "error: Override 'model.layers.9.out=3': model.layers has 7 item(s), model.layers.0 to "
        "model.layers.6, so there is no model.layers.9; to add one, give the whole list "
        "(model.layers=[...]).\n"
    ), past_end.stderr
    # The exact rerun is the same measurement, not a second seed: compare counts it once.
    cmp = _cvsweep(
        ["compare", "cvsweep", "--tracking-uri", store_uri(tmp_path)], tmp_path, data_dir
    )
    assert cmp.returncode == 0, cmp.stderr[-2000:]
    assert "2 runs" in cmp.stdout and "note: 1 finished run(s) repeat a config" in cmp.stderr
    assert reruns[0].info.run_id in cmp.stdout and original.info.run_id not in cmp.stdout


def test_rerun_check_of_a_stopped_run_compares_what_it_logged(tmp_path, data_dir):
    """A run stopped by SIGTERM logged part of its curve and no final numbers: --check
    compares the part it logged, says where it ended, and an override that moves the log
    points is named as the reason, not shown as an infinite difference."""
    args = ["trainer.epochs=50", "dataset.train_limit=512", "dataset.test_limit=500"]
    args += ["trainer.log_every=4", "trainer.progress=off", "schedule=constant"]
    proc = start_train([*args, f"tracking.uri={store_uri(tmp_path)}"], tmp_path, data_dir)
    read_until(proc, "step     16 |")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    client = MlflowClient(store_uri(tmp_path))
    (stopped,) = _runs(client)
    assert stopped.info.status == "KILLED"
    run_id = stopped.info.run_id
    rerun = _rerun_check(tmp_path, data_dir, run_id, "trainer.epochs=3")
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "note: the original run ended KILLED at step" in rerun.stdout
    assert "check passed: largest difference 0.000e+00" in rerun.stdout
    final_row = next(ln for ln in rerun.stdout.splitlines() if ln.startswith("final_test_acc"))
    assert final_row.split()[1] == "-" and final_row.endswith("n/a")
    moved = _rerun_check(tmp_path, data_dir, run_id, "trainer.epochs=3", "trainer.log_every=3")
    assert moved.returncode == 1
    assert "check failed: the rerun did not log test_acc at 1 of the 4 steps" in moved.stderr
    assert "inf" not in moved.stdout + moved.stderr
    negative = _cvsweep(["rerun", run_id, "--check", "--tolerance", "-1"], tmp_path, data_dir)
    assert negative.returncode == 2 and "finite number >= 0" in negative.stderr


def test_rerun_check_of_a_run_stopped_before_it_logged_a_number_is_refused(tmp_path, data_dir):
    """--check of such a run trained it in full, compared nothing, and said "check passed"."""
    args = ["trainer.epochs=50", "trainer.log_every=1000", "dataset.test_limit=500"]
    proc = start_train(
        [*args, "trainer.progress=off", f"tracking.uri={store_uri(tmp_path)}"], tmp_path, data_dir
    )
    read_until(proc, "training cnn on mnist")  # the run exists; its first log point is far off
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    client = MlflowClient(store_uri(tmp_path))
    (stopped,) = _runs(client)
    assert stopped.info.status == "KILLED" and "test_acc" not in stopped.data.metrics
    run_id = stopped.info.run_id
    refused = _rerun_check(tmp_path, data_dir, run_id)
    assert refused.returncode == 2 and refused.stderr == (
        f"error: Run {run_id} was stopped (KILLED) before its first log point: it logged no test "
        "accuracy and no final numbers, so --check would train it and have nothing to compare. "
        "Rerun it without --check to train it as a new run.\n"
    ), refused.stderr
    assert "training cnn" not in refused.stdout and len(_runs(client)) == 1


def _three_epochs_of_8_steps(tmp, data) -> tuple[MlflowClient, str]:
    """A finished run to rerun: 3 epochs of 8 steps, a test point every 4 steps."""
    args = ["trainer.epochs=3", "dataset.train_limit=512", "dataset.test_limit=500"]
    args += ["trainer.log_every=4", "trainer.progress=off", "schedule=constant"]
    first = run_train([*args, f"tracking.uri={store_uri(tmp)}"], tmp, data)
    assert first.returncode == 0, first.stderr[-2000:]
    client = MlflowClient(store_uri(tmp))
    (original,) = _runs(client)
    return client, original.info.run_id


def test_a_stopped_rerun_resumes_and_still_reproduces(tmp_path, data_dir):
    """Ctrl-C in a rerun: the same command resumes that rerun (not the original, not a new run)
    and the check still passes bit for bit; a rerun after a finished one trains again."""
    import os

    client, run_id = _three_epochs_of_8_steps(tmp_path, data_dir)
    command = ["rerun", run_id, "--check", "--tracking-uri", store_uri(tmp_path)]
    proc = start_cvsweep(command, tmp_path, data_dir)
    seen = read_until(proc, "step     12 |")  # epoch 2 of 3
    os.killpg(proc.pid, signal.SIGINT)
    output = "".join(seen) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output[-3000:]
    assert f"`cvsweep rerun {run_id}` with the same overrides resumes it" in output
    (stopped,) = [r for r in _runs(client) if r.data.tags.get("rerun_of") == run_id]
    assert stopped.info.status == "KILLED"

    again = _rerun_check(tmp_path, data_dir, run_id)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"resuming run {stopped.info.run_id} (KILLED)" in again.stdout
    assert "check passed: largest difference 0.000e+00" in again.stdout
    (resumed,) = [r for r in _runs(client) if r.data.tags.get("rerun_of") == run_id]
    assert resumed.info.run_id == stopped.info.run_id and resumed.info.status == "FINISHED"

    third = _rerun_check(tmp_path, data_dir, run_id)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "resuming" not in third.stdout and "skipped" not in third.stdout
    assert len([r for r in _runs(client) if r.data.tags.get("rerun_of") == run_id]) == 2


def test_sigterm_as_a_rerun_finishes_keeps_it_and_says_how_to_compare(tmp_path, data_dir):
    """SIGTERM at the rerun's last step: the rerun run is complete and FINISHED, the command
    stops (exit 143) before comparing, and the compare command it names shows both runs."""
    client, run_id = _three_epochs_of_8_steps(tmp_path, data_dir)
    proc = start_cvsweep(
        ["rerun", run_id, "--tracking-uri", store_uri(tmp_path)], tmp_path, data_dir
    )
    seen = read_until(proc, "step     24 |")  # the last of 3 epochs of 8 steps
    proc.send_signal(signal.SIGTERM)
    output = "".join(seen) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, output[-3000:]
    assert "Traceback" not in output and "final test accuracy:" in output, output[-3000:]
    (rerun,) = [r for r in _runs(client) if r.data.tags.get("rerun_of") == run_id]
    assert rerun.info.status == "FINISHED"
    pair = f"{run_id},{rerun.info.run_id}"
    assert f"Interrupted by SIGTERM as the rerun finished: run {rerun.info.run_id}" in output
    assert f"`cvsweep compare {pair} --tracking-uri {store_uri(tmp_path)}`" in output
    cmp = _cvsweep(["compare", pair, "--tracking-uri", store_uri(tmp_path)], tmp_path, data_dir)
    assert cmp.returncode == 0, cmp.stderr[-2000:]
    assert run_id in cmp.stdout and rerun.info.run_id in cmp.stdout


def test_rerun_uses_the_thread_count_the_original_was_given(tmp_path, data_dir):
    # A parallel launcher gives each job a share of the cores through CVSWEEP_NUM_THREADS;
    # the job's config still says trainer.num_threads=0 (auto). The rerun, launched without
    # it, must train with the same count, or the float sums (and so the numbers) differ.
    env = {**cli_env(data_dir), "CVSWEEP_NUM_THREADS": "1"}
    first = run_train([*QUICK, f"tracking.uri={store_uri(tmp_path)}"], tmp_path, data_dir, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    client = MlflowClient(store_uri(tmp_path))
    (original,) = _runs(client)
    assert original.data.tags["num_threads"] == "1"
    assert original.data.params["trainer.num_threads"] == "0"
    proc = _rerun_check(tmp_path, data_dir, original.info.run_id)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "check passed: largest difference 0.000e+00" in proc.stdout
    assert "CPU kernels" not in proc.stdout  # the same machine: nothing to say about its CPU
    (rerun,) = [r for r in _runs(client) if r.data.tags.get("rerun_of")]
    assert rerun.data.tags["num_threads"] == "1"
    assert rerun.data.tags["config_hash"] == original.data.tags["config_hash"]


def test_a_rerun_on_another_kind_of_cpu_says_its_numbers_may_differ(tmp_path, data_dir):
    """torch's CPU kernels follow the instruction set, and wider vectors add in another order:
    the default run reached 99.13 % on an AVX-512 CPU and 99.26 % on an AVX2 one. A run logs
    which kernels it had; a rerun where they differ says why its numbers may."""
    here = torch.backends.cpu.get_cpu_capability()
    first = run_train([*QUICK, f"tracking.uri={store_uri(tmp_path)}"], tmp_path, data_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    client = MlflowClient(store_uri(tmp_path))
    (original,) = _runs(client)
    assert original.data.tags["device"] == "cpu"
    assert original.data.tags["cpu_capability"] == here
    # As if it had trained on another kind of CPU (this one is the only one here).
    other = "AVX2" if here != "AVX2" else "AVX512"
    client.set_tag(original.info.run_id, "cpu_capability", other)
    proc = _rerun_check(tmp_path, data_dir, original.info.run_id)
    assert (
        f"note: the original run trained with torch's {other} CPU kernels; this machine's are "
        f"{here}, which add in another order"
    ) in proc.stdout, proc.stdout[-2000:]
    assert proc.returncode == 0 and "check passed" in proc.stdout  # the same machine in truth


@pytest.mark.parametrize(
    "bad_id", ["../../etc", "/tmp/x", "%2e%2e", "a" * 40, "ABC", "0123456789abcdef" * 2 + "/.."]
)
def test_bad_run_ids_are_rejected_before_anything_is_written(tmp_path, data_dir, bad_id):
    store = tmp_path / "store"
    store.mkdir()
    (store / "mlflow.db").touch() if bad_id == "a" * 40 else None
    before = sorted(p.name for p in tmp_path.rglob("*"))
    uri = f"sqlite:///{store / 'mlflow.db'}"
    if bad_id == "a" * 40:
        first = run_train(
            [*QUICK, "trainer.shapes_only=true", f"tracking.uri={uri}"], tmp_path / "seed", data_dir
        )
        assert first.returncode == 0
        before = sorted(p.name for p in tmp_path.rglob("*"))
    # PYTHONPROFILEIMPORTTIME lists what the command imported, on stderr.
    env = cli_env(data_dir, PYTHONPROFILEIMPORTTIME="1")
    proc = run_cvsweep(["rerun", bad_id, "--tracking-uri", uri], tmp_path, env)
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr
    assert ("does not exist" if bad_id == "a" * 40 else "is not an MLflow run id") in proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    # Told before the slow imports: MLflow only to look the id up, torch not at all.
    lines = proc.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in lines}
    assert "torch" not in imported
    assert ("mlflow" in imported) == (bad_id == "a" * 40)


def test_relaunched_sweep_skips_finished_runs_and_still_reports_them(tmp_path, data_dir):
    args = ["-m", "optimizer=sgd,adam", *QUICK, f"tracking.uri={store_uri(tmp_path)}"]
    # The sgd cell's config, run before on its own and spelt with a default written out.
    single = ["augment=none", "optimizer=sgd", *QUICK, f"tracking.uri={store_uri(tmp_path)}"]
    outside = run_train(single, tmp_path / "single", data_dir)
    assert outside.returncode == 0, outside.stderr[-2000:]
    first = run_train(args, tmp_path / "a", data_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("skipped: identical to finished run ") == 1
    # It says how to train it anyway, and where the model it already has is.
    model = tmp_path / "single" / "run" / "model.pth"
    assert (
        f"(tracking.skip_finished=false trains it again); its model: {model}\n" in first.stdout
    ), first.stdout[-2000:]
    with open(tmp_path / "a" / "multirun" / "comparison.csv") as f:
        labels = sorted(row["run"] for row in csv.DictReader(f))
    assert labels == [" ".join(["optimizer=adam", *QUICK]), " ".join(["optimizer=sgd", *QUICK])]
    second = run_train(args, tmp_path / "b", data_dir)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("skipped: identical to finished run ") == 2
    assert "training cnn" not in second.stdout
    report = (tmp_path / "b" / "multirun" / "comparison.csv").read_text()
    client = MlflowClient(store_uri(tmp_path))
    finished = [r for r in _runs(client) if r.data.tags.get("config_hash")]
    assert len(finished) == 2  # nothing trained twice
    for run in finished:
        assert run.info.run_id in report
    # The single run's fixed folder used again by another config: its model.pth is that
    # config's now, so a skip no longer points there, and the folder of a job skipped there
    # is evaluated with the finished run's own model, not the one left beside it.
    other = run_train([*single, "seed=5"], tmp_path / "single", data_dir)
    assert other.returncode == 0, other.stderr[-2000:]
    (sgd_id,) = [x.split()[-1] for x in outside.stdout.splitlines() if x.startswith("mlflow run:")]
    again = run_train(single, tmp_path / "single", data_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (
        f"skipped: identical to finished run {sgd_id} (tracking.skip_finished=false trains it "
        "again)\n" in again.stdout
    ), again.stdout[-2000:]
    evaluated = _cvsweep(["evaluate", str(tmp_path / "single" / "run")], tmp_path, data_dir)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert f"skipped as identical to finished run {sgd_id}; evaluating that run's model" in (
        evaluated.stdout
    )
    assert "the run logged" in evaluated.stdout and ": the same" in evaluated.stdout

    forced = run_train([*args, "tracking.skip_finished=false"], tmp_path / "c", data_dir)
    assert forced.returncode == 0
    assert "skipped:" not in forced.stdout


@pytest.mark.slow
def test_run_killed_after_first_epoch_resumes_to_identical_result(tmp_path, data_dir):
    args = [
        "trainer.epochs=3",
        "dataset.train_limit=1024",
        "dataset.test_limit=1000",
        "trainer.log_every=4",
        "trainer.progress=off",
        "augment=rot_flip",
        "trainer.num_threads=2",
    ]
    reference = run_train(args + ["tracking.enabled=false"], tmp_path / "ref", data_dir)
    assert reference.returncode == 0, reference.stderr[-2000:]

    uri = f"tracking.uri={store_uri(tmp_path)}"
    proc = start_train([*args, uri, f"hydra.run.dir={tmp_path}/k"], tmp_path, data_dir)
    # 16 batches an epoch, a log point every 4. Step 24 is in epoch 2: epoch 1's checkpoint
    # (step 16) has been written and logged, and so have the points of step 20; epoch 2's
    # checkpoint is 8 steps and 2 evaluations away.
    read_until(proc, "step     24 |", timeout=240)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert wait_group_gone(proc.pid)  # the tracking process has written what it was sent
    client = MlflowClient(store_uri(tmp_path))
    (killed,) = _runs(client)
    assert killed.info.status == "RUNNING"  # SIGKILL leaves no chance to close it
    before_resume = {
        key: max(h.step for h in client.get_metric_history(killed.info.run_id, key))
        for key in ("test_acc", "epoch_test_acc")
    }

    resumed = run_train(args + [uri], tmp_path / "resumed", data_dir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming run {killed.info.run_id}" in resumed.stdout
    assert "from its checkpoint at step 16" in resumed.stdout
    (run,) = _runs(client)  # still one run: the killed one, now finished
    assert run.info.run_id == killed.info.run_id
    assert run.info.status == "FINISHED"
    ref_acc = [line for line in reference.stdout.splitlines() if "step     40 |" in line]
    got_acc = [line for line in resumed.stdout.splitlines() if "step     40 |" in line]
    assert ref_acc and ref_acc == got_acc
    w_ref = torch.load(tmp_path / "ref/run/model.pth", weights_only=True)
    w_res = torch.load(tmp_path / "resumed/run/model.pth", weights_only=True)
    assert all(torch.equal(w_ref[k], w_res[k]) for k in w_ref)
    history = client.get_metric_history(run.info.run_id, "test_acc")
    final = [h.value for h in history if h.step == 48]
    assert final and final[-1] == run.data.metrics["final_test_acc"]
    # Step 20 (at least) was logged before the kill and trained again after it: every step
    # is in the history once, as in an uninterrupted run.
    assert before_resume["test_acc"] in (20, 24), before_resume
    for key in ("test_acc", "train_loss", "lr"):
        steps = [h.step for h in client.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == list(range(4, 49, 4)), (key, steps)
    epochs = [h.step for h in client.get_metric_history(run.info.run_id, "epoch_test_acc")]
    assert sorted(epochs) == [1, 2, 3]


def test_rerun_from_elsewhere_and_what_rerun_refuses(tmp_path, data_dir):
    """A run launched with a relative dataset.root reruns from another folder (the root is the
    launch folder's, as training took it), with the store given as a bare path; a folder that
    holds a job, a shapes-only run under --check and a rejected override are refused without
    leaving anything behind; a deleted run is used with a note."""
    launch = tmp_path / "launch"
    launch.mkdir()
    (launch / "mydata").symlink_to(data_dir)
    db = tmp_path / "store" / "mlflow.db"
    first = run_train(
        [*QUICK, "dataset.root=mydata", f"tracking.uri=sqlite:///{db}"], launch, data_dir
    )
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"note: made the folder {db.parent} for the new tracking store" in first.stdout
    client = MlflowClient(f"sqlite:///{db}")
    (original,) = _runs(client)
    rid = original.info.run_id

    # in the folder it was launched from, the default store is not where it went: said so
    lost = run_cvsweep(["rerun", rid], launch, cli_env(data_dir))
    assert lost.returncode == 2 and f"was tracked in sqlite:///{db}" in lost.stderr, lost.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = cli_env(data_dir)
    env.pop("CVSWEEP_DATA")  # nothing else tells it where the data is
    again = run_cvsweep(["rerun", rid, "--check", "--tracking-uri", str(db)], elsewhere, env)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "check passed: largest difference 0.000e+00" in again.stdout
    assert not (elsewhere / "data").exists()  # nothing downloaded beside the user

    refused = run_cvsweep(
        ["rerun", rid, "--tracking-uri", str(db), "--out", str(launch / "run")], elsewhere, env
    )
    assert refused.returncode == 2, refused.stderr
    assert f"it is the job folder of run {rid} itself" in refused.stderr
    assert "training cnn" not in refused.stdout

    bare = tmp_path / "bare"
    bare.mkdir()
    bad = run_cvsweep(["rerun", rid, "--tracking-uri", str(db), "optimizer.lr=-1"], bare, env)
    assert bad.returncode == 2 and "optimizer.lr" in bad.stderr, bad.stderr
    assert not list(bare.glob("outputs/rerun/*")), list(bare.rglob("*"))

    shapes = run_train(
        ["trainer.shapes_only=true", f"tracking.uri=sqlite:///{db}"], launch, data_dir
    )
    assert shapes.returncode == 0, shapes.stderr[-2000:]
    (shapes_run,) = [r for r in _runs(client) if r.data.params.get("trainer.shapes_only") == "True"]
    # Its id is printed like any logged run's: rerun, compare and the UI take it.
    assert f"mlflow run: {shapes_run.info.run_id}\n" in shapes.stdout, shapes.stdout[-2000:]
    checked = run_cvsweep(
        ["rerun", shapes_run.info.run_id, "--check", "--tracking-uri", str(db)], bare, env
    )
    assert checked.returncode == 2 and "--check has nothing to compare" in checked.stderr
    assert "check passed" not in checked.stdout

    client.delete_run(rid)
    scored = run_cvsweep(["evaluate", rid, "--tracking-uri", f"sqlite:///{db}"], launch, env)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert f"note: run {rid} is deleted" in scored.stdout
    compared = run_cvsweep(["compare", rid, "--tracking-uri", str(db)], bare, env)
    assert compared.returncode == 0 and f"note: run {rid} is deleted" in compared.stderr

    spaced = run_cvsweep(["compare", rid, rid], bare, env)
    assert spaced.returncode == 2 and "usage: cvsweep compare" in spaced.stderr
    assert f"cvsweep compare {rid},{rid}" in spaced.stderr
    typo = run_cvsweep(["rerun", "--chek", rid], bare, env)
    assert typo.returncode == 2 and "usage: cvsweep rerun" in typo.stderr, typo.stderr


def test_a_failure_that_reproduces_passes_the_check(tmp_path, data_dir):
    """A run that diverged (lr=1e6, a non-finite loss) and its rerun diverging at the same
    mini-batch: the failure reproduces, so --check compares what both logged, and passes."""
    args = [*QUICK, "optimizer=sgd", "optimizer.lr=1e6", f"tracking.uri={store_uri(tmp_path)}"]
    first = run_train(args, tmp_path, data_dir)
    assert first.returncode == 1, first.stderr[-2000:]
    (run,) = _runs(MlflowClient(store_uri(tmp_path)))
    assert run.info.status == "FAILED" and run.data.tags["failure_reason"] == "non_finite_loss"
    step = run.data.tags["failure_step"]
    rerun = _cvsweep(
        ["rerun", run.info.run_id, "--check", "--tracking-uri", store_uri(tmp_path)],
        tmp_path,
        data_dir,
    )
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert (
        f"note: the rerun ended FAILED as the original did (non_finite_loss at mini-batch {step})"
        in rerun.stdout
    ), rerun.stdout[-2000:]
    assert "test_acc history: 0 common log points" in rerun.stdout  # it failed at step 3 of 4
    assert (
        "check passed: the rerun failed as the original did, at the same mini-batch; neither "
        "logged a number before it\n"
    ) in rerun.stdout
    # A rerun that does not fail has not reproduced the run, whatever it logged before.
    tamed = _rerun_check(tmp_path, data_dir, run.info.run_id, "optimizer.lr=0.01")
    assert tamed.returncode == 1, tamed.stdout[-2000:] + tamed.stderr[-2000:]
    assert (
        f"check failed: the original ended FAILED (non_finite_loss) at step {step} and the "
        "rerun FINISHED: the failure did not reproduce"
    ) in tamed.stderr
