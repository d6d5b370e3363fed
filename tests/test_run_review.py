"""A single run as a user watches it: the console it prints, through the real CLI on real data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cvsweep.runtime import set_deterministic

from .conftest import QUICK, cli_env, run_train, start_train


def terminal_rows(text: str) -> list[str]:
    """What a terminal shows for text: a carriage return moves back to the row's start and
    later characters overwrite earlier ones, as the progress bar's redraws do."""
    rows: list[str] = []
    row: list[str] = []
    col = 0
    for ch in text:
        if ch == "\n":
            rows.append("".join(row).rstrip())
            row, col = [], 0
        elif ch == "\r":
            col = 0
        else:
            if col < len(row):
                row[col] = ch
            else:
                row.append(ch)
            col += 1
    rows.append("".join(row).rstrip())
    return rows


def test_progress_bar_leaves_log_lines_readable(tmp_path: Path, data_dir: Path) -> None:
    """With the bar on (a terminal's default) and stdout and stderr on one screen, each log
    line printed mid-epoch starts on its own, not after the bar's text."""
    args = [*QUICK, "trainer.epochs=2", "trainer.log_every=3", "trainer.progress=on"]
    proc = start_train(
        [*args, "tracking=none", f"hydra.run.dir={tmp_path}/run"], tmp_path, data_dir
    )
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    rows = terminal_rows(out)
    points = [r for r in rows if "| lr " in r]
    # 8 steps per epoch: points at steps 3, 6, 9, 12, 15 and at both epochs' ends.
    assert len(points) == 7, "\n".join(rows)
    for row in points:
        assert row.startswith("epoch   "), row
        assert "batch/s" not in row and "%|" not in row, row


def test_error_mid_epoch_starts_its_own_line_under_the_bar(tmp_path: Path, data_dir: Path) -> None:
    """A run that diverges mid-epoch with the bar on: its one-paragraph error is not appended
    to the bar's text on the screen."""
    args = [*QUICK, "trainer.progress=on", "optimizer=sgd", "optimizer.lr=1e4"]
    proc = start_train(
        [*args, "tracking=none", f"hydra.run.dir={tmp_path}/run"], tmp_path, data_dir
    )
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out[-3000:]
    errors = [r for r in terminal_rows(out) if "Non-finite loss" in r]
    assert len(errors) == 1, out[-3000:]
    assert errors[0].startswith("error: Non-finite loss at mini-batch "), errors[0]


def test_a_sweeps_jobs_in_one_process_do_not_inherit_each_others_settings(tmp_path, data_dir):
    """The basic launcher runs the jobs one after another in one process: a job that leaves
    the thread count to torch got the previous job's count, and deterministic algorithms
    stayed on for every job after one that asked for them."""
    args = ["-m", "trainer.num_threads=1,0", "trainer.shapes_only=true", "tracking.enabled=false"]
    proc = run_train(args, tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        capture_output=True,
        text=True,
        env=cli_env(data_dir),
        check=True,
    )
    counts = [
        json.loads((tmp_path / "multirun" / str(job) / "job_result.json").read_text())[
            "num_threads"
        ]
        for job in (0, 1)
    ]
    assert counts == [1, int(fresh.stdout)], counts
    before = torch.are_deterministic_algorithms_enabled()
    try:
        set_deterministic(True)
        set_deterministic(False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before)


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        (
            ["augment=rotate", "augment.degrees=0"],
            "note: augment rotate with augment.flip_p=0.0 augment.degrees=0.0: nothing is "
            "augmented (logged as augment=rotate); choose augment=none",
        ),
        (
            ["augment=rot_flip", "augment.flip_p=0"],
            "note: augment rot_flip with augment.flip_p=0.0 augment.degrees=15.0: the images are "
            "augmented as augment=rotate does (logged as augment=rot_flip); choose augment=rotate",
        ),
    ],
)
def test_a_named_augmentation_whose_setting_is_off_is_noted(tmp_path, data_dir, overrides, said):
    """The run is logged under the augmentation's name: a comparison of augmentations would
    show rotate against none where nothing was rotated."""
    args = ["trainer.epochs=1", "dataset.train_limit=64", "dataset.test_limit=100"]
    proc = run_train([*args, *overrides, "tracking.enabled=false"], tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert said in proc.stdout, proc.stdout


def test_a_job_that_keeps_torchs_deterministic_setting_does_not_load_its_compiler(data_dir):
    """torch.use_deterministic_algorithms imports torch._inductor and torch._dynamo (1.6 s of
    CPU): a job that trains nothing, such as a shape report, must not pay for setting what is
    already set."""
    code = (
        "import sys; from cvsweep.runtime import set_deterministic; set_deterministic(False); "
        "print(sorted(m for m in ('torch._inductor', 'torch._dynamo') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(data_dir)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", proc.stdout
