"""The benchmark runs end to end and prints its comparison table (speed is not asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO, cli_env

pytestmark = pytest.mark.slow


def test_bench_compare_prints_reference_and_cvsweep(tmp_path, data_dir):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.compare",
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
        cwd=REPO,
        env=cli_env(data_dir),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "| batch | augment | reference s/epoch" in out
    rows = [line for line in out.splitlines() if line.startswith("| 64 |")]
    assert len(rows) == 2 and "none" in rows[0] and "rot_flip" in rows[1]
    assert all("×" in row for row in rows)  # a ratio was computed for each configuration
    assert (tmp_path / "bench.json").is_file()
