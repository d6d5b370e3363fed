"""`cvsweep ui` / `cvsweep server` with stores MLflow's server cannot open and a server that
dies: one paragraph and a documented exit code, never MLflow's traceback or a status of 247.

Every server runs as a real subprocess on a free loopback port and is always stopped.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cvsweep.server import free_port
from tests.conftest import run_cvsweep, tracked_quick_run
from tests.test_ui import CliProcess, _children, child_env


def _refused(args: list[str], cwd: Path, **env: str) -> str:
    """stderr of a command that must stop before MLflow starts: exit 2, one `error:` paragraph."""
    proc = run_cvsweep(args, cwd, {**child_env(), **env}, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


@pytest.mark.parametrize("command", ["ui", "server"])
def test_a_file_store_or_a_two_slash_sqlite_uri_is_named_before_mlflow_starts(
    command: str, tmp_path: Path
) -> None:
    """MLflow's server printed a traceback for both and cvsweep exited 1 after it."""
    port = str(free_port())
    err = _refused(
        [command, "--port", port, "--tracking-uri", f"file://{tmp_path}/mlruns"], tmp_path
    )
    assert "is an MLflow file store" in err and "sqlite:///path/to/mlflow.db" in err
    err = _refused([command, "--port", port, "--tracking-uri", "sqlite://mlflow.db"], tmp_path)
    assert "'sqlite://mlflow.db' is not an SQLite store URI" in err and "three slashes" in err
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


def test_mlflow_tracking_uri_is_checked_like_the_option(tmp_path: Path) -> None:
    """A bare path in MLFLOW_TRACKING_URI went to MLflow as a file store (a traceback, exit 1)."""
    store = tmp_path / "mlflow.db"
    port = str(free_port())
    err = _refused(["ui", "--port", port], tmp_path, MLFLOW_TRACKING_URI=str(store))
    assert f"MLFLOW_TRACKING_URI={str(store)!r} is not a store URI" in err
    err = _refused(["ui", "--port", port], tmp_path, MLFLOW_TRACKING_URI=f"file://{tmp_path}/m")
    assert "MLFLOW_TRACKING_URI=" in err and "is an MLflow file store" in err
    assert not store.exists()


@pytest.mark.skipif(
    importlib.util.find_spec("psycopg") is not None
    or importlib.util.find_spec("psycopg2") is not None,
    reason="a PostgreSQL driver is installed",
)
def test_a_database_store_without_its_driver_is_named_without_its_password(
    tmp_path: Path,
) -> None:
    """MLflow's traceback ended in `No module named 'psycopg'`; the URI's password stays out."""
    uri = "postgresql://me:s3cret@db.example/runs"
    err = _refused(["server", "--port", str(free_port()), "--tracking-uri", uri], tmp_path)
    assert "names a postgresql store, but its database driver is not installed" in err
    assert "s3cret" not in err


def test_an_address_that_is_not_ours_reads_as_one_question(tmp_path: Path) -> None:
    """The bind error ended in `?.`; 203.0.113.5 (TEST-NET-3) is never an address of ours."""
    proc = run_cvsweep(
        ["server", "--host", "203.0.113.5", "--port", str(free_port()), "--allow-remote"],
        tmp_path,
        child_env(),
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.rstrip().endswith("is 203.0.113.5 an address of this machine?")


@pytest.mark.slow
def test_a_server_killed_by_a_signal_exits_1_and_names_the_signal(tmp_path: Path) -> None:
    """A killed `mlflow server` made cvsweep exit 247 (-9 as a status) and say `exit code -9`;
    the documented status for a server that dies is 1."""
    ui = CliProcess(
        ["ui", "--port", str(free_port()), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"],
        tmp_path,
    )
    try:
        ui.wait_for(r"Ctrl-C stops it\.")
        children = _children(ui.proc.pid)
        assert children, ui.output
        for pid in children:  # the server leads its own process group
            os.killpg(pid, signal.SIGKILL)
        assert ui.proc.wait(timeout=60) == 1, ui.output
        ui.wait_for(r"error: the MLflow server was killed by SIGKILL")
        assert "exit code -9" not in ui.output
    finally:
        ui.stop()


@pytest.mark.slow
def test_a_deleted_experiment_is_named_with_the_command_that_restores_it(
    tmp_path: Path, data_dir: Path
) -> None:
    """The banner said the deleted experiment `does not exist yet` and would appear after
    `python train.py`, which refuses a deleted experiment; the printed command restores it."""
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path}/mlflow.db"
    _, _, run_id, _ = tracked_quick_run(tmp_path, data_dir)
    client = MlflowClient(tracking_uri=store)
    exp_id = client.get_run(run_id).info.experiment_id
    client.delete_experiment(exp_id)
    ui = CliProcess(["ui", "--port", str(free_port()), "--tracking-uri", store], tmp_path)
    try:
        ui.wait_for(r"Ctrl-C stops it\.")
        assert "does not exist" not in ui.output
        line = ui.wait_for(rf"experiment 'cvsweep' is deleted in this store \(id {exp_id}\).*")
        restore = re.search(
            r"`(MLFLOW_TRACKING_URI=\S+) mlflow (experiments restore [^`]+)`", line[0]
        )
        assert restore, line[0]
        env = dict([*child_env().items(), restore.group(1).split("=", 1)])
        done = subprocess.run(
            [sys.executable, "-m", "mlflow", *shlex.split(restore.group(2))],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        ui.stop()
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    assert client.get_run(run_id).info.lifecycle_stage == "active"


def _can_bind(host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, 0))
        except OSError:
            return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _can_bind("127.0.0.2"), reason="127.0.0.2 cannot be bound here")
def test_another_loopback_address_serves_its_own_link(tmp_path: Path, data_dir: Path) -> None:
    """`--host 127.0.0.2` needs no --allow-remote, but MLflow's default Host check answered its
    printed link with 403 and the banner had only a lookup warning; a foreign Host still gets 403."""
    from mlflow import MlflowClient

    _, _, run_id, _ = tracked_quick_run(tmp_path, data_dir)
    port = free_port()
    ui = CliProcess(
        [
            *("ui", "--host", "127.0.0.2", "--port", str(port)),
            *("--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"),
        ],
        tmp_path,
    )
    try:
        ui.wait_for(r"Ctrl-C stops it\.")
        assert "warning" not in ui.output.lower(), ui.output
        link = ui.wait_for(r"runs of experiment 'cvsweep': (http://127\.0\.0\.2:\d+)/#/\S+")
        url = link.group(1)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url + "/", timeout=30) as resp:
            assert resp.status == 200
        assert MlflowClient(tracking_uri=url).get_run(run_id).info.status == "FINISHED"
        request = urllib.request.Request(url + "/", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(request, timeout=30)
        assert refused.value.code == 403
    finally:
        ui.stop()
