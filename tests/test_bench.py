"""The benchmark runs end to end and prints its comparison table (speed is not asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO, cli_env

pytestmark = pytest.mark.slow


def _bench(module: str, args: list[str], data_dir) -> subprocess.CompletedProcess[str]:
    """`python -m bench.MODULE ARGS` from the repository root, as the docs tell users to."""
    return subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=REPO,
        env=cli_env(data_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bench_compare_prints_reference_and_cvsweep(tmp_path, data_dir):
    proc = _bench(
        "compare",
        [
            "--device",
            "cpu",
            "--rounds",
            "1",
            "--epochs",
            "1",
            "--train-limit",
            "512",
            "--batch-sizes",
            "64",
            "--augment",
            "none,rot_flip",
            "--no-fixed-costs",
            "--json",
            str(tmp_path / "bench.json"),
        ],
        data_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "| batch | augment | reference s/epoch" in out
    rows = [line for line in out.splitlines() if line.startswith("| 64 |")]
    assert len(rows) == 2 and "none" in rows[0] and "rot_flip" in rows[1]
    assert all("×" in row for row in rows)  # a ratio was computed for each configuration
    assert (tmp_path / "bench.json").is_file()


def test_bench_profile_runs_a_command_and_prints_where_its_time_went(tmp_path, data_dir):
    proc = _bench(
        "profile",
        [
            "--top",
            "5",
            "--out",
            str(tmp_path / "run.prof"),
            "--",
            "train.py",
            "trainer.shapes_only=true",
            "tracking.enabled=false",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        data_dir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Shape report" in proc.stdout  # the command's own output
    assert "Ordered by: cumulative time" in proc.stdout
    assert "cvsweep/cli.py" in proc.stdout  # the focus table lists cvsweep's calls
    assert "Ordered by: internal time" in proc.stdout
    assert (tmp_path / "run.prof").stat().st_size > 0


def test_bench_timeline_shows_when_each_part_of_a_run_ran(tmp_path, data_dir):
    proc = _bench(
        "timeline",
        [
            "--",
            "train.py",
            "trainer.epochs=1",
            "dataset.train_limit=256",
            "dataset.test_limit=256",
            "trainer.log_every=2",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        data_dir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "final test accuracy" in proc.stdout  # the command ran as usual
    lines = proc.stderr.split("timeline (s since the process started)")[1].splitlines()
    rows = {ln.split()[2]: ln.split() for ln in lines[1:] if len(ln.split()) >= 3}
    # Nested in call order, each with its start and duration in seconds.
    for name in ("cli.hydra_main", "job.run_job", "job._prepare", "engine.Trainer.fit"):
        assert name in rows, lines
    start, took = float(rows["engine.Trainer.fit"][0]), float(rows["engine.Trainer.fit"][1])
    assert float(rows["job.run_job"][0]) <= start and took > 0
    # Four 64-image batches, a log point every 2: two log points, shown as one line.
    assert rows["engine.Trainer._log_point"][3] == "x2"
    assert "job._TrackedTrainer.on_checkpoint" in rows  # the epoch's checkpoint upload
