"""What a user sees for four store URIs: an empty mlflow.db given to `cvsweep ui`/`server`, an
https:// URI for a plain-HTTP server, a deleted experiment behind a server, and a store URI
missing its `//` given to `load_model`.

Servers are real `cvsweep server` processes on free loopback ports, always stopped.
"""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvsweep.server import free_port
from tests.conftest import QUICK, cli_env, data_root, run_cvsweep, run_train
from tests.test_ui import CliProcess

pytestmark = pytest.mark.xdist_group("uri_review")

BANNER_END = r"Ctrl-C stops it\."
RUN_ID = "0123456789abcdef0123456789abcdef"


def _one_paragraph(text: str) -> str:
    """The single `error:` line a refused command prints, without a traceback."""
    assert "Traceback" not in text, text
    lines = [line for line in text.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """`cvsweep server --port PORT`, which speaks plain HTTP: (port, its folder)."""
    folder = tmp_path_factory.mktemp("plain_server")
    port = free_port()
    server = CliProcess(["server", "--port", str(port)], folder)
    try:
        server.wait_for(BANNER_END)
        yield port, folder
    finally:
        server.stop()


@pytest.mark.parametrize("command", ["ui", "server"])
def test_an_empty_mlflow_db_is_served_as_a_new_store(command: str, tmp_path: Path) -> None:
    """`touch mlflow.db; cvsweep ui` was refused ("an empty file, not an MLflow database")
    while `python train.py` made its store in the same file."""
    db = tmp_path / "mlflow.db"
    db.touch()
    port = free_port()
    server = CliProcess([command, "--port", str(port)], tmp_path)
    try:
        server.wait_for(BANNER_END)
        assert f"store: sqlite:///{db}  (new: nothing was logged here before)" in server.output
        assert "error" not in server.output.lower()
    finally:
        code = server.stop()
    assert code == 0, server.output
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    assert {"experiments", "runs"} <= tables


def test_https_to_a_plain_http_server_says_so_and_names_the_http_uri(
    plain_server: tuple[int, Path], tmp_path: Path
) -> None:
    """It was "Tracking server https://... is not answering (... wrong version number)":
    the user went looking for a server that was running all along."""
    port, _ = plain_server
    https, http = f"https://127.0.0.1:{port}", f"http://127.0.0.1:{port}"
    data = data_root()
    trained = run_train([*QUICK, f"tracking.uri={https}"], tmp_path / "train", data)
    compared = run_cvsweep(
        ["compare", "cvsweep", "--tracking-uri", https], tmp_path, cli_env(data), timeout=120
    )
    for proc in (trained, compared):
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
        line = _one_paragraph(proc.stderr)
        assert f"Tracking server {https} answered, but not over TLS" in line
        assert "wrong version number" in line.lower()
        assert f"Use {http} instead." in line
        assert "not answering" not in line
    assert "epoch" not in trained.stdout  # refused before any training


def _restore_command(stderr: str) -> str:
    line = _one_paragraph(stderr)
    found = re.search(r"`([^`]*mlflow experiments restore[^`]*)`", line)
    assert found, line
    return found.group(1)


def _run_as_typed(command: str, cwd: Path) -> None:
    """Run a printed `[VAR=value] mlflow ...` command in a shell with no MLflow settings."""
    words = shlex.split(command)
    env = {k: v for k, v in cli_env(data_root()).items() if not k.startswith("MLFLOW_")}
    while "=" in words[0]:
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    assert words[0] == "mlflow", command
    proc = subprocess.run(
        [sys.executable, "-m", *words], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_deleted_experiment_behind_a_server_names_the_server_in_its_restore_command(
    plain_server: tuple[int, Path], tmp_path: Path
) -> None:
    """It said "Restore it in the MLflow UI" with no command; an `mlflow experiments restore`
    run as typed acts on ./mlflow.db, not on the server the runs are in."""
    from mlflow import MlflowClient

    port, _ = plain_server
    uri = f"http://127.0.0.1:{port}"
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("gone_behind_server")
    client.delete_experiment(exp_id)
    args = [*QUICK, f"tracking.uri={uri}", "tracking.experiment=gone_behind_server"]
    proc = run_train(args, tmp_path, data_root())
    assert proc.returncode == 2, proc.stderr[-3000:]
    command = _restore_command(proc.stderr)
    assert command == (
        f"MLFLOW_TRACKING_URI={uri} mlflow experiments restore --experiment-id {exp_id}"
    )
    _run_as_typed(command, tmp_path)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    assert not (tmp_path / "mlflow.db").exists()


def test_a_deleted_experiment_in_the_default_store_gets_the_plain_restore_command(
    tmp_path: Path,
) -> None:
    """./mlflow.db is the store `mlflow` opens by itself: the command needs no store named."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp_id = client.create_experiment("gone_here")
    client.delete_experiment(exp_id)
    proc = run_train([*QUICK, "tracking.experiment=gone_here"], tmp_path, data_root())
    assert proc.returncode == 2, proc.stderr[-3000:]
    command = _restore_command(proc.stderr)
    assert command == f"mlflow experiments restore --experiment-id {exp_id}"
    _run_as_typed(command, tmp_path)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"


def test_load_model_names_a_store_uri_missing_its_slashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`file:./mlruns` was read as the path of a file in a folder called `file:.` ("There is no
    MLflow store at .../file:./mlruns"), unlike --tracking-uri on the command line."""
    from cvsweep.saved_model import load_model
    from cvsweep.store_errors import StoreError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError) as refused:
        load_model(RUN_ID, tracking_uri="file:./mlruns")
    assert "tracking_uri='file:./mlruns' is not a store URI. Use sqlite:///" in str(refused.value)
    evaluated = run_cvsweep(
        ["evaluate", RUN_ID, "--tracking-uri", "file:./mlruns"],
        tmp_path,
        cli_env(data_root()),
        timeout=120,
    )
    assert evaluated.returncode == 2, evaluated.stderr[-3000:]
    line = _one_paragraph(evaluated.stderr)
    assert "--tracking-uri='file:./mlruns' is not a store URI. Use sqlite:///" in line
    assert sorted(os.listdir(tmp_path)) == []


def test_load_model_advice_names_its_argument_not_the_commands_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_model's store errors told a Python user to "pass --tracking-uri", a flag they have
    no command line for; they name its tracking_uri argument, and the command keeps its flag."""
    from cvsweep.saved_model import load_model
    from cvsweep.store_errors import StoreError

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "store_folder"
    folder.mkdir()
    (folder / "mlflow.db").write_bytes(b"SQLite format 3\x00")  # only named, never opened
    (tmp_path / "notes.txt").write_text("not a store")
    cases = {
        "missing.db": "or pass tracking_uri='sqlite:///path/to/mlflow.db' (or http://HOST:PORT",
        str(folder): f"the store in it is {folder / 'mlflow.db'}: pass "
        f"tracking_uri='{folder / 'mlflow.db'}'.",
        "notes.txt": "Point tracking_uri at the store your runs were logged to",
    }
    for given, advice in cases.items():
        with pytest.raises(StoreError) as refused:
            load_model(RUN_ID, tracking_uri=given)
        said = str(refused.value)
        assert advice in said, said
        assert "--tracking-uri" not in said, said
    evaluated = run_cvsweep(
        ["evaluate", RUN_ID, "--tracking-uri", str(folder)],
        tmp_path,
        cli_env(data_root()),
        timeout=120,
    )
    assert evaluated.returncode == 2, evaluated.stderr[-3000:]
    line = _one_paragraph(evaluated.stderr)
    assert f"pass --tracking-uri {folder / 'mlflow.db'}." in line, line
