"""Shared helpers: the real CLI in a subprocess, on the real data, in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# MLflow decides about telemetry at import time; tests never send any.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    env = os.environ.get("CVSWEEP_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = data_root()
    if not (root / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data not found at {root} (set CVSWEEP_DATA)")
    return root


def cli_env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(
        CVSWEEP_DATA=str(data), PYTHONUNBUFFERED="1", MLFLOW_DISABLE_TELEMETRY="true", **extra
    )
    env.pop("CVSWEEP_NUM_THREADS", None)
    return env


def run_train(
    args: list[str],
    tmp: Path,
    data: Path,
    *,
    timeout: float = 300,
    python_flags: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python train.py ARGS` with outputs under tmp; returns the finished process."""
    multirun = "-m" in args or "--multirun" in args
    where = [f"hydra.sweep.dir={tmp}/multirun"] if multirun else [f"hydra.run.dir={tmp}/run"]
    tmp.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, *python_flags, str(REPO / "train.py"), *args, *where]
    return subprocess.run(
        cmd,
        cwd=tmp,
        env=env or cli_env(data),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cvsweep(
    args: list[str], cwd: Path, env: dict[str, str], *, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`cvsweep ARGS` in a subprocess, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "cvsweep.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def db_uri(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'mlflow.db'}"


QUICK = [
    "trainer.epochs=1",
    "dataset.train_limit=512",
    "dataset.test_limit=1000",
    "trainer.log_every=4",
    "trainer.eval_batch_size=1000",
    "trainer.progress=off",
]
