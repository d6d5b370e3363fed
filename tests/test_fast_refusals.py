"""A mistyped model source or store is named before torch or MLflow loads.

Those imports are most of the second and a half such a one-line answer used to take; the
answer itself needs neither.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import cli_env, data_root

RUN = "0123456789abcdef0123456789abcdef"
NO_STORE = "There is no MLflow store at {db}: the file does not exist (and was not created)."


def _refused(args: list[str], cwd: Path) -> tuple[str, set[str]]:
    """The one error line of `cvsweep ARGS` (exit 2) and the modules it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cvsweep.cli", *args],
        cwd=cwd,
        env=cli_env(data_root()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", proc.stderr, re.M))
    said = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert len(said) == 1 and not proc.stdout, proc.stdout + "\n".join(said)
    return said[0], imported


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["evaluate", "outputs/nope/model.pth"],
            "error: no such file or folder: outputs/nope/model.pth (looked for in {cwd}). Give a "
            "job folder, the model.pth in one, or an MLflow run id",
        ),
        (
            ["evaluate", "0123"],
            "error: '0123' is neither a job folder (or a model.pth in one) nor an MLflow run id",
        ),
        (["evaluate", RUN], "error: " + NO_STORE),
        (["evaluate", RUN, "--tracking-uri", "other.db"], "error: " + NO_STORE),
        (
            ["evaluate", RUN, "--tracking-uri", "file:./mlruns"],
            "error: --tracking-uri='file:./mlruns' is not a store URI.",
        ),
        (["compare", RUN], "error: " + NO_STORE),
        (["rerun", RUN], "error: " + NO_STORE),
        (["report", "--out", "results.md"], "error: " + NO_STORE),
    ],
)
def test_a_mistyped_source_or_store_is_named_before_torch_and_mlflow_load(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    line, imported = _refused(args, tmp_path)
    db = tmp_path / ("other.db" if "other.db" in args else "mlflow.db")
    assert line.startswith(expected.format(cwd=tmp_path, db=db)), line
    assert "cvsweep.signals" in imported  # the import report was read (cli imports it)
    heavy = {m for m in imported if m.split(".")[0] in ("torch", "mlflow")}
    assert not heavy and not {"cvsweep.evaluate", "cvsweep.saved_model"} & imported, heavy
    assert not list(tmp_path.iterdir())  # no store, folder or file made


def test_a_run_id_is_still_looked_up_in_a_store_that_exists(tmp_path: Path) -> None:
    """The early check passes a store that exists: the id is then looked up in it, as before."""
    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    line, imported = _refused(["evaluate", RUN], tmp_path)
    assert line.startswith(f"error: Run {RUN} does not exist in the store sqlite:///{db}."), line
    assert any(m.split(".")[0] == "mlflow" for m in imported)


def test_every_option_of_every_command_says_what_it_is_for():
    """`cvsweep report --help` listed --out with no word of its default or where its figures
    go, `rerun` its run id bare, `ui` its --port without the default."""
    import argparse

    from cvsweep.cli import build_parser

    def commands(parser: argparse.ArgumentParser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield name, sub
                    yield from ((f"{name} {n}", s) for n, s in commands(sub))

    silent = [
        f"cvsweep {name} {action.dest}"
        for name, sub in commands(build_parser())
        for action in sub._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert silent == []
    ui = subprocess.run(
        [sys.executable, "-m", "cvsweep.cli", "ui", "--help"], capture_output=True, text=True
    )
    assert ui.returncode == 0 and "(default: 5000)" in ui.stdout, ui.stdout
