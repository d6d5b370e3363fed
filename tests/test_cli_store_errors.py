"""compare, rerun and report on a store that is damaged, missing or down: one paragraph, exit 2.

The file is only ever read: a damaged store stays byte for byte as it was, and a missing one is
not created, so the user can still restore or inspect what they had.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from cvsweep.server import free_port

from .conftest import QUICK, cli_env, data_root, run_cvsweep, run_train

COMMANDS = {
    "compare": ["compare", "cvsweep"],
    "rerun": ["rerun", "0123456789abcdef0123456789abcdef"],
    "report": ["report", "--out", "results.md"],
}


def _run(name: str, tmp: Path, uri: str) -> tuple[int, str]:
    proc = run_cvsweep(
        [*COMMANDS[name], "--tracking-uri", uri], tmp, cli_env(data_root()), timeout=120
    )
    return proc.returncode, proc.stdout + proc.stderr


def _assert_one_paragraph(output: str) -> None:
    assert "Traceback" not in output
    assert "sqlalchemy.exc" not in output
    assert len(output.strip().splitlines()) == 1, output


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with MLflow's tables and no runs, made once."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_random_bytes_store_is_named_and_left_alone(tmp_path: Path, name: str) -> None:
    db = tmp_path / "mlflow.db"
    original = os.urandom(20000)
    db.write_bytes(original)
    code, output = _run(name, tmp_path, f"sqlite:///{db}")
    assert code == 2, output
    _assert_one_paragraph(output)
    assert f"The tracking store {db} is not an MLflow database" in output
    assert "move it aside" in output and "--tracking-uri" in output
    assert db.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


@pytest.mark.parametrize("name", ["compare", "report"])
def test_foreign_sqlite_file_gets_no_mlflow_tables(tmp_path: Path, name: str) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    before = db.read_bytes()
    code, output = _run(name, tmp_path, f"sqlite:///{db}")
    assert code == 2, output
    _assert_one_paragraph(output)
    assert "is an SQLite database but not an MLflow store" in output
    assert db.read_bytes() == before


def test_empty_file_is_not_turned_into_a_store(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.touch()
    code, output = _run("compare", tmp_path, f"sqlite:///{db}")
    assert code == 2, output
    _assert_one_paragraph(output)
    assert "is an empty file, not an MLflow database" in output
    assert db.stat().st_size == 0


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_missing_store_is_not_created(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "nope"
    code, output = _run(name, tmp_path, f"sqlite:///{folder / 'mlflow.db'}")
    assert code == 2, output
    _assert_one_paragraph(output)
    assert f"There is no MLflow store at {folder / 'mlflow.db'}" in output
    assert "--tracking-uri" in output
    assert not folder.exists()


def test_store_damaged_after_its_first_page(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").create_experiment("cvsweep")
    conn = sqlite3.connect(db)
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with db.open("r+b") as fh:  # the schema page stays; every table's pages are noise
        fh.seek(page)
        fh.write(os.urandom(db.stat().st_size - page))
    before = db.read_bytes()
    code, output = _run("compare", tmp_path, f"sqlite:///{db}")
    assert code == 2, output
    _assert_one_paragraph(output)
    assert f"The tracking store {db} is damaged and cannot be read" in output
    assert db.read_bytes() == before


def test_a_store_that_is_locked_or_being_made_is_busy_not_damaged(
    tmp_path: Path, empty_store: Path
) -> None:
    """Another process holding the store's lock, or making its tables: nothing to move aside
    or upgrade, only to run again. train.py says it too, once MLflow stops waiting."""
    db = tmp_path / "mlflow.db"
    shutil.copy(empty_store, db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code, output = _run("compare", tmp_path, f"sqlite:///{db}")
        train = run_train([*QUICK, f"tracking.uri=sqlite:///{db}"], tmp_path, data_root())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 2, output
    _assert_one_paragraph(output)
    assert f"The tracking store {db} is busy: another process holds a lock on it" in output
    assert train.returncode == 2, train.stderr[-2000:]
    assert f"error: The tracking store {db} is busy: another process held a lock" in train.stderr
    for said in (output, train.stderr):
        assert "mv " not in said and "damaged" not in said

    new = tmp_path / "new" / "mlflow.db"  # a store whose first command is making its tables
    new.parent.mkdir()
    conn = sqlite3.connect(new)
    conn.execute("CREATE TABLE experiments (experiment_id INTEGER)")
    conn.commit()
    conn.close()
    with open(f"{new}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        code, output = _run("compare", tmp_path, f"sqlite:///{new}")
    assert code == 2, output
    _assert_one_paragraph(output)
    assert f"The tracking store {new} is being created by another command" in output
    assert "mv " not in output and "upgrade" not in output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_server_that_is_not_running_is_named_at_once(tmp_path: Path, name: str) -> None:
    # MLflow alone retries a refused connection for minutes before it gives up; the timeout
    # below is only a guard against that hang, the command itself answers in seconds.
    uri = f"http://127.0.0.1:{free_port()}"
    proc = run_cvsweep(
        [*COMMANDS[name], "--tracking-uri", uri], tmp_path, cli_env(data_root()), timeout=60
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    _assert_one_paragraph(output)
    assert f"Tracking server {uri} is not answering" in output
    assert "cvsweep server --port PORT" in output and "tracking.required" not in output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_ctrl_c_while_a_command_loads_ends_in_one_line(
    tmp_path: Path, name: str, empty_store: Path
) -> None:
    """Ctrl-C while MLflow and torch load (the first seconds of every command): exit 130 and
    one line saying so, not an import traceback."""
    import signal
    import subprocess
    import sys
    import time

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    shutil.copy(empty_store, tmp_path / "mlflow.db")  # MLflow loads once the store is found
    proc = subprocess.Popen(
        [sys.executable, "-m", "cvsweep.cli", *COMMANDS[name], "--tracking-uri", uri],
        cwd=tmp_path,
        env=cli_env(data_root()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(1.0)  # past the interpreter's start, before MLflow has loaded
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    _assert_one_paragraph(output)
    assert f"Interrupted by SIGINT: cvsweep {name} stopped." in output


def test_compare_names_a_bad_out_folder_and_a_deleted_experiment(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.delete_experiment(client.create_experiment("old"))
    (tmp_path / "taken").write_text("notes\n")

    def compare(*args: str, cwd: Path = tmp_path) -> tuple[int, str]:
        proc = run_cvsweep(
            ["compare", *args, "--tracking-uri", uri], cwd, cli_env(data_root()), timeout=120
        )
        return proc.returncode, proc.stdout + proc.stderr

    code, output = compare("old", "--out", str(tmp_path / "taken"))
    assert code == 2, output
    _assert_one_paragraph(output)
    assert "is a file, not a folder" in output
    assert (tmp_path / "taken").read_text() == "notes\n"
    code, output = compare("old")
    assert code == 2, output
    _assert_one_paragraph(output)
    assert "Experiment 'old' is deleted" in output
    # The store is ./mlflow.db where the command runs: mlflow's own default there.
    assert "(or `mlflow experiments restore --experiment-id " in output
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code, output = compare("old", cwd=elsewhere)  # the command as printed must act on uri
    assert code == 2, output
    assert f"(or `MLFLOW_TRACKING_URI={uri} mlflow experiments restore --experiment-id " in output


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_out_path_that_takes_no_files_is_named_before_anything_is_read(
    tmp_path: Path,
) -> None:
    """/proc passes os.access for root, yet no file can be made there: the path is tried."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for args in (
        ["compare", "sweep-x", "--out", "/proc/cvsweep-out"],
        ["report", "--out", "/proc/cvsweep-results.md"],
    ):
        proc = run_cvsweep(
            [*args, "--tracking-uri", uri], tmp_path, cli_env(data_root()), timeout=120
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 2, output
        _assert_one_paragraph(output)
        assert f"--out {args[-1]} cannot be written: /proc takes no new files" in output
    assert not (tmp_path / "mlflow.db").exists()


def test_a_command_missing_its_argument_names_only_that_one(tmp_path: Path) -> None:
    """`cvsweep rerun` alone: the run id is missing; its overrides are optional and not named."""
    proc = run_cvsweep(["rerun"], tmp_path, cli_env(data_root()), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "cvsweep rerun: error: the following arguments are required: run_id"
    )
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_store_uri_missing_its_slashes_is_named_as_a_uri(tmp_path: Path, name: str) -> None:
    """`file:./mlruns` was read as a bare path: "no folder .../file:. for the store mlruns"."""
    code, output = _run(name, tmp_path, "file:./mlruns")
    assert code == 2, output
    _assert_one_paragraph(output)
    assert "--tracking-uri='file:./mlruns' is not a store URI. Use sqlite:///" in output
    assert not (tmp_path / "file:.").exists()


def test_a_path_in_mlflow_tracking_uri_is_named_as_that_variable(tmp_path: Path) -> None:
    """MLflow read it as a file store, and its own error ("maintenance mode") never said where
    the value came from; train.py and the commands now check it as they check tracking.uri."""
    env = cli_env(data_root(), MLFLOW_TRACKING_URI="./mlruns")
    said = "MLFLOW_TRACKING_URI='./mlruns' is not a store URI. Use sqlite:///"
    for args in (COMMANDS["compare"], COMMANDS["rerun"]):
        proc = run_cvsweep(args, tmp_path, env, timeout=120)
        assert proc.returncode == 2, proc.stderr
        _assert_one_paragraph(proc.stdout + proc.stderr)
        assert said in proc.stderr
    train = run_train([*QUICK], tmp_path, data_root(), env=env)
    assert train.returncode == 2, train.stderr[-2000:]
    assert f"error: {said}" in train.stderr and "training cnn" not in train.stdout
    assert not (tmp_path / "mlruns").exists()


def test_a_long_store_error_is_cut_at_a_word_not_inside_one():
    """MLflow's message about file:// stores was cut mid-URL ("See htt)"), reading as a typo."""
    from cvsweep.store_errors import store_failure

    exc = RuntimeError("The backend is old. " * 20 + "See https://mlflow.org/docs/latest/x")
    said = str(store_failure("file:///somewhere/mlruns", exc))
    assert said.startswith("Cannot read the tracking store file:///somewhere/mlruns (RuntimeError")
    assert "The backend is old ...). Check that it is the store" in said, said
