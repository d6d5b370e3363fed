"""Shared helpers: the real CLI in a subprocess, on the real data, in a temporary folder."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# MLflow decides about telemetry at import time; tests never send any.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Two test workers share the cores, so each command's torch threads share them with another's.
# OpenMP's idle threads spin by default, burning the time the other command waits for: two
# 2-thread trainings side by side on 2 cores took 12.7 s each, 5.7 s with passive waiting (alone,
# 4.4 s either way). Only how idle threads wait changes; thread counts and results do not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# A suite started in the background (`pytest &`, nohup) has Ctrl-C ignored, and so would every
# command it starts; the tests press Ctrl-C as at a terminal, where it stops a command.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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


def run_python(args: list[str], cwd: Path, data: Path) -> subprocess.CompletedProcess[str]:
    """`python ARGS` as a user types it in cwd (a script or -m module and its arguments)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=cli_env(data),
        capture_output=True,
        text=True,
        timeout=300,
    )


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


def start_train(args: list[str], tmp: Path, data: Path) -> subprocess.Popen[str]:
    """`python train.py ARGS` running, output merged into a pipe, in its own process group.

    The group holds the trainer and its tracking process, so a test can signal both as a
    terminal or a batch system would, and see when both are gone (`wait_group_gone`).
    """
    return _start([str(REPO / "train.py"), *args], tmp, data)


def start_cvsweep(args: list[str], tmp: Path, data: Path) -> subprocess.Popen[str]:
    """`cvsweep ARGS` running, like `start_train`."""
    return _start(["-m", "cvsweep.cli", *args], tmp, data)


def _start(args: list[str], tmp: Path, data: Path) -> subprocess.Popen[str]:
    tmp.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=tmp,
        env=cli_env(data),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def read_until(
    proc: subprocess.Popen[str], marker: str, timeout: float = 180, *, count: int = 1
) -> list[str]:
    """The lines proc printed up to the count-th that contains marker (or until timeout).

    count=2 waits for both jobs of a parallel sweep, whose lines share the pipe.
    """
    seen = []
    found = 0
    deadline = time.time() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        found += marker in line
        if found >= count or time.time() > deadline:
            break
    return seen


def wait_group_gone(pgid: int, timeout: float = 30) -> bool:
    """Wait until no process of the group is left; False if one still is after timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


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
    """The URI of tmp/mlflow.db, as it is: a command given it makes the store if it is missing."""
    return f"sqlite:///{tmp / 'mlflow.db'}"


def store_uri(tmp: Path) -> str:
    """The URI of tmp/mlflow.db, an empty store copied in first if there is none.

    Making a store runs MLflow's table creation and its migrations: 1.5 s of CPU in each new
    folder, which a test that is not about making a store need not pay. The copy comes from one
    store made the same way (cvsweep's own open) once per test process. Tests of a store's
    creation, or of a refusal that must leave no store behind, use db_uri.
    """
    db = tmp / "mlflow.db"
    if not db.exists():
        tmp.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_empty_store(), db)
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            # MLflow's Default experiment keeps the absolute folder its store was made in.
            conn.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                (str(tmp / "mlruns" / "0"),),
            )
    return db_uri(tmp)


@functools.cache
def _empty_store() -> Path:
    """This test process's empty store, made on first use."""
    from cvsweep.tracking import client_for

    folder = Path(tempfile.mkdtemp(prefix="cvsweep-empty-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    client_for(db_uri(folder))
    return folder / "mlflow.db"


QUICK = [
    "trainer.epochs=1",
    "dataset.train_limit=512",
    "dataset.test_limit=1000",
    "trainer.log_every=4",
    "trainer.eval_batch_size=1000",
    "trainer.progress=off",
]


def tracking_processes(session: int) -> list[tuple[int, int]]:
    """(pid, parent pid) of each tracking process (cvsweep.store_worker) in a session: one
    that `start_train` began, so that no other command's processes on this machine are
    counted or signalled."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
            fields = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()
            ppid, sid = int(fields[1]), int(fields[3])
        except (OSError, ValueError, IndexError):
            continue
        if b"cvsweep.store_worker" in args and sid == session:
            found.append((int(cmdline.parent.name), ppid))
    return found


def tracked_quick_run(tmp: Path, data: Path) -> tuple[Path, Path, str, str]:
    """One quick run tracked in tmp/mlflow.db, launched from tmp with CVSWEEP_DATA=data:
    (launch folder, job folder, run id, printed final test accuracy)."""
    proc = run_train([*QUICK, f"tracking.uri={store_uri(tmp)}"], tmp, data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = Path(re.search(r"job folder: (\S+)", proc.stdout).group(1))
    run_id = re.search(r"mlflow run: (\w+)", proc.stdout).group(1)
    acc = re.search(r"final test accuracy: ([\d.]+)%", proc.stdout).group(1)
    return tmp, folder, run_id, acc


def sweep_parent_id(proc: subprocess.CompletedProcess[str]) -> str:
    """The parent run id a sweep prints (`sweep parent run: <id>`)."""
    match = re.search(r"sweep parent run: ([0-9a-f]{32})", proc.stdout)
    assert match, proc.stdout[-2000:] + proc.stderr[-2000:]
    return match.group(1)
