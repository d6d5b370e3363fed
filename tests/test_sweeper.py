"""The default sweeper: Hydra's basic sweeper without composing each checked job twice."""

from __future__ import annotations

from .conftest import QUICK, REPO, run_python


def _compositions(tmp_path, data_dir, extra: list[str]) -> tuple[int, str]:
    """How often a 2-job sweep composed a job's config, seen by bench.timeline."""
    proc = run_python(
        ["-m", "bench.timeline", "--all", "--", "train.py", "-m", "optimizer=sgd,adam"]
        + [*QUICK, "trainer.shapes_only=true", *extra]
        + [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
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
        + [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"],
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
