"""What `cvsweep ui` / `cvsweep server` print, as a user sees it: cvsweep's banner and nothing of
MLflow's or uvicorn's start-up and request chatter; hints that can be followed as written (the
train.py override for another experiment, an address other machines can use); and no advice to
move a file aside when the "store" is a mistyped path naming a document.

The servers run as real subprocesses on free ports and are always stopped.
"""

from __future__ import annotations

import http.client
import re
import socket
from pathlib import Path

import pytest

from cvsweep.server import free_port
from tests.conftest import QUICK, run_cvsweep, run_train
from tests.test_ui import CliProcess, child_env, port_open

#: Lines a loopback `cvsweep ui` may print: its banner, its stop line, and the one line MLflow
#: prints that no option silences (docs/tracking-server.md says so).
UI_LINES = (
    "MLflow UI: ",
    "experiment ",
    "runs of experiment ",
    "store: ",
    "artifacts: ",
    "Ctrl-C stops it.",
    "stopping the MLflow server ...",
    "[MLflow] Security middleware enabled with default settings (localhost-only).",
)
NOISE = (
    "Registry store URI not provided",
    "StarletteDeprecationWarning",
    "Uvicorn running",
    "Started server process",
    "Creating initial MLflow database tables",
    '"GET /',
)


def _get(port: int, path: str, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


@pytest.mark.slow
def test_ui_prints_its_banner_only_and_the_train_command_for_the_experiment(
    tmp_path: Path,
) -> None:
    """A fresh store and another experiment: the hint names its override, and neither start-up
    nor requests add MLflow's or uvicorn's lines."""
    port = free_port()
    cli = CliProcess(
        [
            "ui",
            "--port",
            str(port),
            "--experiment",
            "fashion",
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
        ],
        cwd=tmp_path,
    )
    try:
        cli.wait_for(r"Ctrl-C stops it\.")
        for path in ("/health", "/", "/api/2.0/mlflow/experiments/search?max_results=1"):
            assert _get(port, path, f"127.0.0.1:{port}") == 200
    finally:
        code = cli.stop()
    assert code == 0, cli.output
    assert not port_open(port)
    out = cli.output
    assert (
        "experiment 'fashion' does not exist in this store yet; it appears after the first "
        "`python train.py tracking.experiment=fashion` with this store." in out
    ), out
    for noise in NOISE:
        assert noise not in out, out
    strays = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith(UI_LINES)]
    assert not strays, out


@pytest.mark.slow
def test_remote_server_names_an_address_other_machines_can_use(tmp_path: Path) -> None:
    """/etc/hosts maps the hostname to 127.0.0.1, so getfqdn() says `localhost`: the hint
    must name something else, that the server accepts as a Host header, or say how to find it."""
    port = free_port("0.0.0.0")
    cli = CliProcess(
        [
            "server",
            "--host",
            "0.0.0.0",
            "--allow-remote",
            "--port",
            str(port),
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
        ],
        cwd=tmp_path,
    )
    try:
        hint = cli.wait_for(r"(?m)^\(from other machines: .*\)$").group(0)
        cli.wait_for(r"Ctrl-C stops it\.")
        match = re.search(r"tracking\.uri=http://(\S+):(\d+)\)", hint)
        if match:
            name = match.group(1)
            assert name.lower() != "localhost" and not name.startswith(("127.", "[::1]")), hint
            assert int(match.group(2)) == port
            api = "/api/2.0/mlflow/experiments/search?max_results=1"
            assert _get(port, api, f"{name}:{port}") == 200, hint
        else:
            assert "hostname -I" in hint, hint
    finally:
        code = cli.stop()
    assert code == 0, cli.output
    for noise in NOISE:
        assert noise not in cli.output, cli.output


def test_remote_hint_without_any_outside_address_says_how_to_find_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A machine whose names all resolve to loopback and that has no route out."""
    from cvsweep import server

    monkeypatch.setattr(socket, "gethostname", lambda: "vm")
    monkeypatch.setattr(socket, "getfqdn", lambda name="": "localhost")
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, 1, 6, "", ("127.0.0.1", 0))]
    )
    monkeypatch.setattr(server, "outward_address", lambda: None)
    hint = server.remote_hint("0.0.0.0", 5000)
    assert "localhost" not in hint and "tracking.uri=http://vm" not in hint
    assert "hostname -I" in hint and "tracking.uri=http://ADDRESS:5000" in hint

    monkeypatch.setattr(server, "outward_address", lambda: "203.0.113.7")
    assert server.remote_hint("0.0.0.0", 5000) == (
        "(from other machines: tracking.uri=http://203.0.113.7:5000)"
    )
    hosts, origins = server.remote_security("0.0.0.0", 5000)
    assert "203.0.113.7:5000" in hosts.split(",")  # the printed address is not refused
    assert "http://203.0.113.7:5000" in origins.split(",")
    assert server.remote_hint("198.51.100.4", 5001).endswith("http://198.51.100.4:5001)")


@pytest.mark.parametrize("command", ["ui", "server", "compare"])
def test_a_document_named_as_the_store_gets_no_advice_to_move_it(
    command: str, tmp_path: Path
) -> None:
    """`--tracking-uri sqlite:///…/README.md` is a mistyped path, not a damaged store."""
    doc = tmp_path / "README.md"
    doc.write_text("# my project\n\nNotes I want to keep.\n")
    args = [command, *(["cvsweep"] if command == "compare" else [])]
    proc = run_cvsweep(
        [*args, "--tracking-uri", f"sqlite:///{doc}"], tmp_path, child_env(), timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert err.startswith(f"error: The tracking store {doc} is not an MLflow database"), err
    assert "not even an SQLite file" in err and "Check the path" in err, err
    assert "mv " not in err and ".broken" not in err and "move it aside" not in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # ui and server serve a store file and refuse a server's address: none is suggested.
    assert ("http://HOST:PORT" in err) == (command == "compare"), err
    assert doc.read_text() == "# my project\n\nNotes I want to keep.\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


def test_a_store_file_that_lost_its_header_keeps_the_advice(tmp_path: Path) -> None:
    """mlflow.db whose first page was overwritten may be the user's store: restore or move."""
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"\x00garbage" * 512)
    proc = run_cvsweep(["ui", "--tracking-uri", f"sqlite:///{db}"], tmp_path, child_env())
    assert proc.returncode == 2, proc.stderr
    assert "Check the path" in proc.stderr
    assert f"mv {db} {db}.broken" in proc.stderr and "restore it from a backup" in proc.stderr
    assert "http://" not in proc.stderr


def test_training_with_a_document_as_the_store_is_refused_without_advice_to_move_it(
    tmp_path: Path, data_dir: Path
) -> None:
    """train.py names the mistyped path plainly and leaves the document (and its folder) be."""
    doc = tmp_path / "README.md"
    doc.write_text("# my project\n")
    proc = run_train([*QUICK, f"tracking.uri=sqlite:///{doc}"], tmp_path, data_dir)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"The tracking store {doc} is not an SQLite file at all: check the path" in proc.stderr
    assert ".broken" not in proc.stderr and "Traceback" not in proc.stderr
    assert doc.read_text() == "# my project\n"
    assert not (tmp_path / "README.md.lock").exists()  # nothing put beside it either
