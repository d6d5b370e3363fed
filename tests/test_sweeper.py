"""The default sweeper: Hydra's basic sweeper without composing each checked job twice."""

from __future__ import annotations

from .conftest import QUICK, REPO, run_python, store_uri


def _compositions(tmp_path, data_dir, extra: list[str]) -> tuple[int, str]:
    """How often a 2-job sweep composed a job's config, seen by bench.timeline."""
    proc = run_python(
        ["-m", "bench.timeline", "--all", "--", "train.py", "-m", "optimizer=sgd,adam"]
        + [*QUICK, "trainer.shapes_only=true", *extra]
        + [f"tracking.uri={store_uri(tmp_path)}"]
        + [f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        REPO,
        data_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    timeline = proc.stderr.split("timeline (s since the process started)")[1]
    return timeline.count("ConfigLoaderImpl.load_sweep_config"), proc.stdout


def test_each_job_is_composed_once_to_check_it_and_once_to_run_it(tmp_path, data_dir):
    count, out = _compositions(tmp_path / "default", data_dir, [])
    assert count == 4, out[-2000:]
    assert out.count("shape report:") == 2  # both jobs ran
    # Hydra's own basic sweeper composes each job a third time, for its check of the batch.
    count, out = _compositions(tmp_path / "basic", data_dir, ["hydra/sweeper=basic"])
    assert count == 6, out[-2000:]
    assert out.count("shape report:") == 2


def test_a_glob_sweep_is_checked_before_it_starts(tmp_path, data_dir):
    proc = run_python(
        ["train.py", "-m", "optimizer=glob(ad*)", "optimizer.lr=-1", *QUICK]
        + ["trainer.shapes_only=true", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
        + [f"tracking.uri={store_uri(tmp_path)}"],
        REPO,
        data_dir,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "error: job #0 (optimizer=adam optimizer.lr=-1" in proc.stderr
    assert "the learning rate must be > 0" in proc.stderr
    assert not (tmp_path / "sweep" / "0").exists()  # no job ran


def test_checked_jobs_count_only_for_the_sweep_config_they_were_checked_with():
    from omegaconf import OmegaConf

    from cvsweep import sweep

    cfg, other = OmegaConf.create({"seed": 0}), OmegaConf.create({"seed": 0})
    saved = sweep._CHECKED
    try:
        sweep._CHECKED = sweep._CheckedJobs(cfg, {("optimizer=sgd",)}, {"tracking.uri"})
        assert sweep.checked_job(cfg, ["optimizer=sgd", "tracking.uri=sqlite\\:////x.db"])
        assert not sweep.checked_job(cfg, ["optimizer=adam"])
        assert not sweep.checked_job(other, ["optimizer=sgd"])  # a later sweep's config
    finally:
        sweep._CHECKED = saved


def test_an_untracked_sweep_says_there_is_no_report(tmp_path, data_dir):
    proc = run_python(
        ["train.py", "-m", "optimizer=sgd,adam", *QUICK, "trainer.shapes_only=true"]
        + ["tracking=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        REPO,
        data_dir,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.count("shape report:") == 2
    assert "note: no comparison report: it is built from the tracking store's runs" in proc.stdout
    assert not (tmp_path / "sweep" / "comparison.md").exists()


def _tracked_sweep(tmp_path, data_dir, args: list[str]):
    """`python train.py -m ARGS` from the checkout, tracked in tmp_path/mlflow.db."""
    return run_python(
        ["train.py", "-m", *args, f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"],
        REPO,
        data_dir,
    )


def test_jobs_in_nested_folders_are_found_and_a_failed_one_fails_the_sweep(tmp_path, data_dir):
    """A hydra.sweep.subdir with a `/` puts each job two folders down: its result (and so a
    failure's exit code 1) was missed, and the sweep exited 0 with "0 jobs ended"."""
    sweep = tmp_path / "sweep"
    proc = _tracked_sweep(
        tmp_path,
        data_dir,
        ["optimizer=sgd", "optimizer.lr=1e6,0.01", *QUICK, f"hydra.sweep.dir={sweep}"]
        + ["hydra.sweep.subdir=lr${optimizer.lr}/s${seed}"],
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "sweep: 2 jobs ended" in proc.stdout, proc.stdout[-2000:]
    assert "error: 1 of 2 jobs did not finish (FAILED)" in proc.stderr, proc.stderr[-2000:]
    assert sorted(p.parent.relative_to(sweep).as_posix() for p in sweep.rglob("model.pth")) == [
        "lr0.01/s0"
    ]


def test_override_dirname_names_job_folders_by_the_users_overrides_only(tmp_path, data_dir):
    """The parent run id and store URI a sweep adds to each job are not in the folder name
    (the URI's slashes nested it six folders deep)."""
    sweep = tmp_path / "sweep"
    proc = _tracked_sweep(
        tmp_path,
        data_dir,
        ["optimizer=sgd,adam", "trainer.shapes_only=true", f"hydra.sweep.dir={sweep}"]
        + ["hydra.sweep.subdir=${hydra.job.override_dirname}"],
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    jobs = sorted(p.parent.relative_to(sweep).as_posix() for p in sweep.rglob("job_result.json"))
    assert jobs == [
        "optimizer=adam,trainer.shapes_only=True",
        "optimizer=sgd,trainer.shapes_only=True",
    ], jobs


def test_a_sweep_dir_that_differs_per_job_is_refused(tmp_path, data_dir):
    proc = _tracked_sweep(
        tmp_path,
        data_dir,
        ["optimizer=sgd", "optimizer.lr=0.1,0.01", *QUICK]
        + [f"hydra.sweep.dir={tmp_path}/ms/lr${{optimizer.lr}}"],
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.startswith(
        f"error: hydra.sweep.dir={tmp_path}/ms/lr${{optimizer.lr}} gives the jobs folders of "
        "their own (job #0, "
    ), proc.stderr
    assert "Put what tells the jobs apart in hydra.sweep.subdir" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ms").exists()
