"""What a job leaves for the people sharing its machine and folders: files they can read, and
a word when its thread count crowds the cores."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from .conftest import QUICK, run_train


def test_model_files_are_readable_like_the_rest_and_crowded_threads_are_said(tmp_path, data_dir):
    cores = len(os.sched_getaffinity(0))
    proc = run_train(
        [*QUICK, "tracking.enabled=false", f"trainer.num_threads={cores + 1}"], tmp_path, data_dir
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        f"note: torch runs {cores + 1} threads on the {cores} core(s) this process may use"
        in proc.stdout
    )
    folder = Path(re.search(r"job folder: (\S+)", proc.stdout).group(1))
    mode = stat.S_IMODE((folder / "shape_report.md").stat().st_mode)  # as the umask makes it
    for name in ("model.pth", "checkpoint.pt"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == mode, name

    default = run_train([*QUICK, "tracking.enabled=false"], tmp_path / "default", data_dir)
    assert default.returncode == 0, default.stderr[-2000:]
    assert "note: torch runs" not in default.stdout  # torch's own choice is not second-guessed
