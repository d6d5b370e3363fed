"""`python train.py` end to end on real MNIST subsets, as a user runs it."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from cvsweep.config import ModelConfig
from cvsweep.model import build_model

from .conftest import (
    QUICK,
    REPO,
    cli_env,
    db_uri,
    run_cvsweep,
    run_python,
    run_train,
    store_uri,
)

LOG_LINE = re.compile(
    r"epoch +\d+/\d+ +batch +\d+/\d+ +step +\d+ \| train loss [\d.]+ acc +[\d.]+% "
    r"\| test loss [\d.]+ acc +[\d.]+% \| lr [\d.e+-]+"
)


def test_single_run_prints_report_logs_and_saves_model(tmp_path, data_dir):
    proc = run_train(
        [
            "trainer.epochs=1",
            "dataset.train_limit=4096",
            "tracking.enabled=false",
            "trainer.log_every=16",
            "trainer.progress=off",
        ],
        tmp_path,
        data_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "31,898" in out
    assert "| fc1 | Flatten+Linear+ReLU | (16, 16, 5, 5) | (16, 64) | 25,664 |" in out
    lines = LOG_LINE.findall(out)
    assert len(lines) >= 4  # 64 batches, a line every 16
    model_path = tmp_path / "run" / "model.pth"
    assert f"model: {model_path}" in out
    assert f"job folder: {tmp_path / 'run'}" in out
    assert "checkpoint: " in out and (tmp_path / "run" / "checkpoint.pt").is_file()
    final = re.search(r"final test accuracy: ([\d.]+)%", out)
    assert final and float(final.group(1)) > 80.0
    state = torch.load(model_path, weights_only=True)
    cfg = OmegaConf.merge(
        OmegaConf.structured(ModelConfig), OmegaConf.load(REPO / "conf/model/cnn.yaml")
    )
    model = build_model(cfg)
    model.load_state_dict(state)
    assert sum(p.numel() for p in model.parameters()) == 31898
    assert (tmp_path / "run" / "shape_report.md").read_text().count("31,898") == 1
    # Hydra's log, named after the command, holds what the run printed
    assert (tmp_path / "run" / "train.log").read_text() == out


def test_train_log_found_through_a_symlink_and_a_closed_stdout_is_no_crash(tmp_path, data_dir):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")

    def train(folder: Path, **io: Any) -> subprocess.CompletedProcess[str]:
        args = [*QUICK, "tracking.enabled=false", f"hydra.run.dir={folder}"]
        return subprocess.run(
            [sys.executable, str(REPO / "train.py"), *args],
            cwd=tmp_path,
            env=cli_env(data_dir),
            text=True,
            timeout=300,
            **io,
        )

    linked = train(tmp_path / "link" / "x", capture_output=True)
    assert linked.returncode == 0, linked.stderr[-2000:]
    assert (tmp_path / "real" / "x" / "train.log").read_text() == linked.stdout
    # `python train.py ... >&-`: Python's sys.stdout is then None
    closed = train(tmp_path / "c", stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1))
    assert closed.returncode == 0, closed.stderr[-2000:]
    assert (tmp_path / "c" / "model.pth").is_file()


def test_train_log_holds_each_jobs_lines_and_a_rejected_configs_error(tmp_path, data_dir):
    bad = run_train(["optimizer.lr=-1", "tracking.enabled=false"], tmp_path / "bad", data_dir)
    assert bad.returncode == 2
    error = "error: Invalid config value optimizer.lr=-1.0: the learning rate must be > 0."
    assert error in bad.stderr
    assert (tmp_path / "bad" / "run" / "train.log").read_text() == error + "\n"
    sweep = run_train(
        ["-m", *QUICK, "optimizer=sgd,adam", "tracking.enabled=false"], tmp_path / "s", data_dir
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    for num, name in enumerate(("sgd", "adam")):
        folder = tmp_path / "s" / "multirun" / str(num)
        log = (folder / "train.log").read_text()
        assert f"optimizer {name}" in log and f"job folder: {folder}" in log
        assert "final test accuracy" in log and log.count("Shape report") == 1


def test_a_refused_run_leaves_the_earlier_job_in_a_reused_folder_as_it_was(tmp_path, data_dir):
    """A fixed hydra.run.dir used again by a command whose config is refused: the folder keeps
    the earlier job's config, log and model together, so evaluate reads them as they belong."""
    first = run_train([*QUICK, "tracking.enabled=false"], tmp_path, data_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    folder = tmp_path / "run"

    def files() -> dict[Path, bytes]:
        return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    before = files()
    assert Path("model.pth") in before and Path(".hydra/config.yaml") in before
    for refused in (["optimizer.lr=-1"], [f"dataset.root={tmp_path / 'nowhere'}"]):
        bad = run_train(["dataset=fashion_mnist", *refused], tmp_path, data_dir)
        assert bad.returncode == 2, bad.stderr[-2000:]
        assert f"Nothing in {folder} was changed: it keeps its earlier job's files." in bad.stderr
        assert files() == before
    error = "error: Invalid config value optimizer.lr=-1.0: the learning rate must be > 0."
    fresh = run_train(["optimizer.lr=-1"], tmp_path / "fresh", data_dir)
    assert fresh.returncode == 2 and fresh.stderr.strip() == error  # no earlier job to keep


def test_the_same_command_again_into_a_fixed_folder_keeps_its_model_the_runs(tmp_path, data_dir):
    """Run again with a fixed hydra.run.dir, the job is skipped in the folder its run trained
    in: the record says so, and the folder's model is still evaluated as the run's own, also
    where the store is not at hand."""
    args = [*QUICK, f"tracking.uri={store_uri(tmp_path)}"]
    first = run_train(args, tmp_path, data_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_train(args, tmp_path, data_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    folder = tmp_path / "run"
    assert f"; its model: {folder / 'model.pth'}" in again.stdout, again.stdout[-2000:]
    result = json.loads((folder / "job_result.json").read_text())
    assert result["status"] == "SKIPPED" and result["trained_here"] is True
    assert result["device"] == "cpu" and result["num_threads"]
    (tmp_path / "mlflow.db").rename(tmp_path / "elsewhere.db")
    proc = run_cvsweep(["evaluate", str(folder)], tmp_path, cli_env(data_dir))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "on these images: the same" in proc.stdout, proc.stdout


def test_with_chdir_the_default_data_folder_is_the_launch_folders(tmp_path, data_dir):
    """hydra.job.chdir=true runs the job in its own folder: the relative default `data` is
    still read where the command was launched (as the store is), not fetched into each job."""
    (tmp_path / "data").symlink_to(data_dir, target_is_directory=True)
    env = cli_env(data_dir)
    env.pop("CVSWEEP_DATA")
    proc = run_train([*QUICK, "tracking=none", "hydra.job.chdir=true"], tmp_path, data_dir, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "fetching" not in proc.stdout, proc.stdout[-2000:]
    result = json.loads((tmp_path / "run" / "job_result.json").read_text())
    assert result["data_root"] == str(data_dir.resolve())
    assert not (tmp_path / "run" / "data").exists()


def test_the_logged_command_keeps_the_config_folder_and_name(tmp_path, data_dir):
    """A run composed from the user's own config file (`-cd myconf --config-name quick`) logs
    a command that composes it again: without the flags it trained the full default config."""
    conf = tmp_path / "myconf"
    conf.mkdir()
    (conf / "quick.yaml").write_text(
        "defaults:\n  - train\n  - _self_\ntrainer:\n  epochs: 1\n  log_every: 4\n"
        "dataset:\n  train_limit: 512\n  test_limit: 500\n"
    )
    args = ["-cd", str(conf), "--config-name", "quick", "trainer.progress=off"]
    proc = run_train([*args, f"tracking.uri={store_uri(tmp_path)}"], tmp_path, data_dir)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    from mlflow import MlflowClient

    run_id = re.search(r"mlflow run: (\w+)", proc.stdout).group(1)
    command = MlflowClient(store_uri(tmp_path)).get_run(run_id).data.tags["command"]
    assert command.startswith(f"python train.py --config-dir {conf} --config-name quick "), command


def test_launches_that_name_one_time_folder_each_get_their_own(tmp_path, data_dir):
    """Hydra names a launch's folder by the time (`outputs/<date>/<time>`): two launches in
    the same second, as scripts and array jobs start them, would share it, each logging the
    other's model.pth to its run. A folder named from the time belongs to the launch that made
    it; the next one gets `_2`. Named by the year here, so the two clash for sure."""
    train = [str(REPO / "train.py"), *QUICK, "tracking.enabled=false"]
    year = str(datetime.date.today().year)
    runs = [
        run_python([*train, f"seed={seed}", "hydra.run.dir=runs/${now:%Y}"], tmp_path, data_dir)
        for seed in (0, 1)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr[-2000:]
    folders = [tmp_path / "runs" / year, tmp_path / "runs" / f"{year}_2"]
    for proc, folder in zip(runs, folders, strict=True):
        assert f"job folder: {folder}\n" in proc.stdout, proc.stdout[-2000:]
    weights = [torch.load(f / "model.pth", weights_only=True) for f in folders]
    assert not torch.equal(weights[0]["conv1.0.weight"], weights[1]["conv1.0.weight"])
    sweeps = [
        run_python(
            [train[0], "-m", *train[1:], f"seed={a},{b}", "hydra.sweep.dir=sweeps/${now:%Y}"],
            tmp_path,
            data_dir,
        )
        for a, b in ((0, 1), (2, 3))
    ]
    assert [r.returncode for r in sweeps] == [0, 0], sweeps[-1].stderr[-2000:]
    for num, (proc, name) in enumerate(zip(sweeps, (year, f"{year}_2"), strict=True)):
        for job in (0, 1):
            folder = tmp_path / "sweeps" / name / str(job)
            assert f"job folder: {folder}\n" in proc.stdout, proc.stdout[-2000:]
            assert f"seed: {2 * num + job}\n" in (folder / ".hydra" / "config.yaml").read_text()
    fixed = [run_python([*train, "hydra.run.dir=same"], tmp_path, data_dir) for _ in (0, 1)]
    for proc in fixed:  # a folder named outright is the user's to use again
        assert f"job folder: {tmp_path / 'same'}\n" in proc.stdout, proc.stderr[-2000:]


def test_cnn_c6_prints_its_total(tmp_path, data_dir):
    proc = run_train(
        ["model=cnn_c6", "trainer.shapes_only=true", "tracking.enabled=false"], tmp_path, data_dir
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "28,758" in proc.stdout
    assert "| conv1 | Conv2d+ReLU | (16, 1, 28, 28) | (16, 6, 24, 24) | 156 |" in proc.stdout


def test_shape_report_is_printed_again_when_the_run_is_skipped(tmp_path, data_dir):
    args = ["trainer.shapes_only=true", f"tracking.uri={store_uri(tmp_path)}"]
    first = run_train(args, tmp_path / "a", data_dir)
    again = run_train(args, tmp_path / "b", data_dir)
    assert first.returncode == 0 and again.returncode == 0, again.stderr[-2000:]
    row = "| conv1 | Conv2d+ReLU | (16, 1, 28, 28) | (16, 16, 24, 24) | 416 |"
    assert row in first.stdout and row in again.stdout
    assert "skipped: identical to finished run" in again.stdout


def test_an_on_off_setting_spelled_another_way_is_the_same_config(tmp_path, data_dir):
    """YAML and Hydra read `off` and `false` as a boolean (`False`, as the default was logged
    before it was quoted); `=off` on the command line is the word. One setting: the run is
    skipped, not trained again. The default is the word the docs use."""
    args = ["trainer.shapes_only=true", f"tracking.uri={store_uri(tmp_path)}"]
    first = run_train(args, tmp_path / "a", data_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    saved = (tmp_path / "a" / "run" / ".hydra" / "config.yaml").read_text()
    assert "cudnn_benchmark: 'off'" in saved  # was 'False', which --help showed too
    for spelled in ("trainer.cudnn_benchmark=off", "trainer.cudnn_benchmark=false"):
        again = run_train([*args, spelled], tmp_path / spelled.rpartition("=")[2], data_dir)
        assert again.returncode == 0, again.stderr[-2000:]
        assert "skipped: identical to finished run" in again.stdout, (spelled, again.stdout)


def test_logged_lr_at_an_epoch_end_does_not_depend_on_log_every(tmp_path, data_dir):
    # StepLR steps once per epoch (lr x0.7): every point of epoch 1, its last one included,
    # shows the rate epoch 1 trained with, whether or not log_every divides the epoch.
    rates = {}
    for every in (3, 4):
        args = [*QUICK, "trainer.epochs=2", "schedule=step", f"trainer.log_every={every}"]
        proc = run_train([*args, "tracking.enabled=false"], tmp_path / str(every), data_dir)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = re.findall(
            r"epoch +(\d+)/2 +batch +\d+/8 +step +(\d+) \|.*\| lr (\S+)", proc.stdout
        )
        rates[every] = {int(step): (int(epoch), float(lr)) for epoch, step, lr in lines}
    assert rates[3][8] == rates[4][8] == (1, rates[4][4][1])  # step 8 ends epoch 1 (8 batches)
    assert rates[3][16] == rates[4][16] == (2, round(0.7 * rates[4][4][1], 6))


def test_each_point_shows_the_rate_its_step_trained_with(tmp_path, data_dir):
    # onecycle (the default) steps every mini-batch: the printed and logged lr of step s is
    # the one torch's OneCycleLR gave step s, up to the last step's final rate (no rate
    # of a step after the end).
    args = [
        *QUICK,
        "trainer.epochs=2",
        "trainer.log_every=3",
        f"tracking.uri={store_uri(tmp_path)}",
    ]
    proc = run_train(args, tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = {
        int(step): float(lr) for step, lr in re.findall(r"step +(\d+) \|.*\| lr (\S+)", proc.stdout)
    }
    assert sorted(printed) == [3, 6, 8, 9, 12, 15, 16]  # every 3rd step and each epoch's end
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([weight], lr=0.001)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.004, total_steps=16, pct_start=0.25, cycle_momentum=False
    )
    trained_with = {}
    for step in range(1, 17):
        trained_with[step] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        schedule.step()
    for step, lr in printed.items():
        assert lr == pytest.approx(trained_with[step], rel=1e-3), step
    assert printed[16] == pytest.approx(0.004 / 25 / 1e4, rel=1e-3)  # onecycle's final rate
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("cvsweep").experiment_id])
    logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "lr")}
    assert logged == pytest.approx({s: trained_with[s] for s in printed}, rel=1e-6)


def test_phased_schedule_names_its_phases_and_the_overrides_it_does_not_use(tmp_path, data_dir):
    quick = [a for a in QUICK if not a.startswith("trainer.epochs=")]
    args = [*quick, "schedule=sgd_then_adam", "trainer.epochs=5", "optimizer.lr=0.1"]
    args += ["optimizer.weight_decay=0.001", "schedule.phases.0.epochs=1"]
    args += ["schedule.phases.1.epochs=2", f"tracking.uri={store_uri(tmp_path)}"]
    proc = run_train(args, tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    # MLflow says what trained: the phases' optimizers and total epochs, not the moot settings.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("cvsweep").experiment_id])
    assert run.data.params["optimizer"] == "sgd then adam"
    assert run.data.params["trainer.epochs"] == "3"
    # every phase sets its lr and epochs; weight_decay reaches the adam phase (the run's group)
    assert (
        "note: schedule sgd_then_adam trains in phases that set their own epochs and optimizer: "
        "trainer.epochs=5 optimizer.lr=0.1 not used" in out
    )
    assert ", optimizer sgd then adam, augment none, schedule sgd_then_adam," in out
    assert "phase 1/2: epoch 1 of 3, sgd lr=0.0001 weight_decay=0.0 momentum=0.9" in out
    assert "phase 2/2: epochs 2-3 of 3, adam lr=0.0001 weight_decay=0.001" in out
    assert out.index("phase 2/2") < out.index("epoch   2/3")
    assert "epoch   3/3" in out and "epoch   4/" not in out


def test_a_reader_that_goes_away_does_not_fail_the_run(tmp_path, data_dir):
    # `python train.py | head -3`: the reader leaves after three lines; the run goes on to its end.
    args = [*QUICK, "trainer.log_every=1", f"tracking.uri={store_uri(tmp_path)}"]
    with (tmp_path / "stderr.txt").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *args, f"hydra.run.dir={tmp_path}/run"],
            cwd=tmp_path,
            env=cli_env(data_dir),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        assert proc.stdout is not None
        first = [proc.stdout.readline() for _ in range(3)]
        proc.stdout.close()
        assert proc.wait(timeout=300) == 0, (tmp_path / "stderr.txt").read_text()[-2000:]
    assert first[0].startswith("Shape report")
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
    assert (tmp_path / "run" / "model.pth").is_file()
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(tmp_path))
    (run,) = client.search_runs([client.get_experiment_by_name("cvsweep").experiment_id])
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "test_acc")) == 8  # every step


def test_same_config_twice_gives_identical_metrics_and_weights(tmp_path, data_dir):
    args = [*QUICK, "augment=rot_flip", "tracking.enabled=false", "trainer.num_threads=2"]
    a = run_train(args, tmp_path / "a", data_dir)
    b = run_train(args, tmp_path / "b", data_dir)
    assert a.returncode == 0 and b.returncode == 0, a.stderr[-2000:] + b.stderr[-2000:]
    assert LOG_LINE.findall(a.stdout) == LOG_LINE.findall(b.stdout)
    assert len(LOG_LINE.findall(a.stdout)) >= 2
    wa = torch.load(tmp_path / "a/run/model.pth", weights_only=True)
    wb = torch.load(tmp_path / "b/run/model.pth", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_other_seed_gives_other_numbers(tmp_path, data_dir):
    a = run_train([*QUICK, "tracking.enabled=false"], tmp_path / "a", data_dir)
    b = run_train([*QUICK, "tracking.enabled=false", "seed=1"], tmp_path / "b", data_dir)
    assert a.returncode == 0 and b.returncode == 0
    assert LOG_LINE.findall(a.stdout) != LOG_LINE.findall(b.stdout)


def test_two_phase_schedule_switches_optimizer(tmp_path, data_dir):
    phases = (
        "schedule.phases=[{epochs:1,optimizer:{name:sgd,lr:0.01,momentum:0.9}},"
        "{epochs:1,optimizer:{name:adam,lr:0.001}}]"
    )
    proc = run_train(
        [
            "schedule=sgd_then_adam",
            phases,
            "dataset=fashion_mnist",
            "dataset.train_limit=256",
            "trainer.log_every=1000",
            "tracking.enabled=false",
            "trainer.progress=off",
        ],
        tmp_path,
        data_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = LOG_LINE.findall(proc.stdout)
    assert len(lines) == 2
    assert "epoch   1/2" in lines[0] and "lr 1.000e-02" in lines[0]
    assert "epoch   2/2" in lines[1] and "lr 1.000e-03" in lines[1]


def _exit_script(tail: str) -> subprocess.CompletedProcess[str]:
    """A process that ends through cli.exit_without_teardown, with an exit handler to see."""
    code = (
        "import atexit, sys, threading, time\n"
        "from cvsweep.cli import exit_without_teardown\n"
        "atexit.register(lambda: print('exit handler ran', flush=True))\n"
        "print('partial line', end='')\n" + tail
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_exit_without_teardown_keeps_exit_handlers_output_and_status():
    proc = _exit_script("exit_without_teardown('error: something named')\n")
    assert proc.returncode == 1
    assert proc.stdout == "partial lineexit handler ran\n"
    assert proc.stderr.strip() == "error: something named"
    assert _exit_script("exit_without_teardown(7)\n").returncode == 7
    assert _exit_script("exit_without_teardown(None)\n").returncode == 0


def test_exit_without_teardown_leaves_running_threads_to_the_normal_exit():
    proc = _exit_script(
        "t = threading.Thread(target=lambda: (time.sleep(0.5), print('thread done', flush=True)))\n"
        "t.start()\n"
        "exit_without_teardown(3)\n"
        "print(' normal exit', flush=True)\n"
        "sys.exit(3)\n"
    )
    assert proc.returncode == 3
    assert "normal exit" in proc.stdout and "thread done" in proc.stdout


def test_unwritable_output_folder_is_a_clear_error_before_any_run(tmp_path, data_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    db = tmp_path / "mlflow.db"
    args = [*QUICK, f"tracking.uri=sqlite:///{db}"]
    for extra in ([f"hydra.run.dir={blocker}/run"], ["-m", f"hydra.sweep.dir={blocker}/sweep"]):
        proc = subprocess.run(
            [sys.executable, str(REPO / "train.py"), *extra, *args],
            cwd=tmp_path,
            env=cli_env(data_dir),
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"error: cannot write the output folder {blocker}/" in proc.stderr
        assert "Traceback" not in proc.stderr and "training cnn" not in proc.stdout
        assert not db.exists()  # no run, no sweep parent left RUNNING


def test_a_note_can_be_added_to_a_run_without_a_preset(tmp_path, data_dir):
    """`experiment` holds free-form notes; without a preset it is empty, and `+` adds to it."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "+experiment.note=baseline", "--cfg", "job"],
        cwd=tmp_path,
        env=cli_env(data_dir),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "experiment:\n  note: baseline" in proc.stdout


def test_train_py_runs_the_code_and_config_of_its_own_checkout(tmp_path, data_dir):
    # A second checkout (a clone, a worktree) beside the installed one, its config changed.
    other = tmp_path / "other"
    shutil.copytree(REPO / "src", other / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "conf", other / "conf")
    shutil.copy(REPO / "train.py", other / "train.py")
    train_yaml = other / "conf" / "train.yaml"
    text = train_yaml.read_text()
    assert "  report_batch_size: 16\n" in text
    train_yaml.write_text(text.replace("  report_batch_size: 16\n", "  report_batch_size: 7\n"))
    script, quiet = str(other / "train.py"), ["trainer.shapes_only=true", "tracking.enabled=false"]
    proc = run_python([script, *quiet, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| conv1 | Conv2d+ReLU | (7, 1, 28, 28) | (7, 16, 24, 24) | 416 |" in proc.stdout
    # A launcher's job processes too (submitit's start a new interpreter for each job).
    sweep = run_python(
        [script, "-m", "hydra/launcher=submitit_local", *quiet]
        + [f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        tmp_path,
        data_dir,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    report = (tmp_path / "sweep" / "0" / "shape_report.md").read_text()
    assert "| conv1 | Conv2d+ReLU | (7, 1, 28, 28) | (7, 16, 24, 24) | 416 |" in report


def test_settings_the_run_cannot_follow_are_noted(tmp_path, data_dir):
    """Limits beyond the dataset, a batch larger than the data, a onecycle too short to warm up
    and augment=none that augments: the run goes on, and says what it does instead."""
    args = ["trainer.epochs=1", "dataset.train_limit=100", "dataset.test_limit=20000"]
    args += ["trainer.batch_size=256", "augment.degrees=15", "tracking.enabled=false"]
    proc = run_train([*args, "trainer.progress=off"], tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "note: dataset.test_limit=20000 is more than the 10,000 test images of mnist" in out
    assert "note: trainer.batch_size=256 is more than the 100 training images" in out
    assert "note: schedule onecycle needs at least 3 steps" in out
    assert "note: augment none with augment.flip_p=0.0 augment.degrees=15.0" in out
    assert "(100 train / 10000 test images)" in out
    # 4 steps: a quarter of them is not one whole warm-up step, so the share is moved.
    # 72 images at batch 16: 4 steps, and 8 images (a ninth) left out of each epoch.
    args = ["trainer.epochs=1", "dataset.train_limit=72", "dataset.test_limit=100"]
    proc = run_train([*args, "trainer.batch_size=16", "tracking.enabled=false"], tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        "note: trainer.batch_size=16 leaves 8 of the 72 training images out of each epoch: an "
        "epoch trains 4 full batch(es) (64 images) of a fresh shuffle"
    ) in proc.stdout
    assert (
        "note: schedule.pct_start=0.25 leaves the warm-up of onecycle without a step in 4 steps; "
        "0.375 is used"
    ) in proc.stdout


FULL_DISK = """
import resource, runpy, signal, sys
# Files may grow to 200 kB: the model (128 kB) fits, the checkpoint with Adam's state does not.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_checkpoint_that_cannot_be_written_is_one_line_naming_the_file(tmp_path, data_dir):
    """A full disk (here: a file size limit) while writing the checkpoint: torch reports it
    as `unexpected pos` with the reason two exceptions down. Said in one line instead, with the
    file and the cause, and no half-written file left."""
    script = tmp_path / "limited.py"
    script.write_text(FULL_DISK)
    args = [str(script), str(REPO / "train.py"), *QUICK, "tracking.enabled=false"]
    proc = run_python([*args, f"hydra.run.dir={tmp_path}/run"], tmp_path, data_dir)
    assert proc.returncode == 1, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    assert f"error: cannot write {tmp_path / 'run' / 'checkpoint.pt'}: file too large" in output
    assert "Traceback" not in output and "unexpected pos" not in output
    assert not list((tmp_path / "run").glob(".checkpoint.pt.*"))
    result = json.loads((tmp_path / "run" / "job_result.json").read_text())
    assert result["status"] == "FAILED" and "cannot write" in result["error"]

    # With tracking, the new store's creation fails too (its tracking process has the same
    # limit): each lost write is one line, not SQLAlchemy's SQL; and the store it left half
    # made is named, with what to do, when the next command finds it.
    args = [str(script), str(REPO / "train.py"), *QUICK, f"tracking.uri={db_uri(tmp_path)}"]
    proc = run_python([*args, f"hydra.run.dir={tmp_path}/run2"], tmp_path, data_dir)
    assert proc.returncode != 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    warnings = [line for line in output.splitlines() if "warning: tracking:" in line]
    assert warnings and "[SQL:" not in output and "sqlalche.me" not in output, output[-3000:]
    again = run_train([*QUICK, f"tracking.uri={db_uri(tmp_path)}"], tmp_path, data_dir)
    assert again.returncode == 2, again.stderr[-2000:]
    assert again.stderr.startswith(f"error: The tracking store {tmp_path / 'mlflow.db'} cannot be")
    assert f"mv {tmp_path / 'mlflow.db'} {tmp_path / 'mlflow.db'}.broken" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr
