"""`cvsweep server`: a real job logs through it, and it refuses foreign Host headers.

The server runs as a real `cvsweep server` subprocess on a free loopback port with a fresh SQLite
store; the job is the real `python train.py` with `tracking.uri=http://127.0.0.1:PORT`, so its
experiment gets MLflow's proxied `mlflow-artifacts:` location and every artifact goes through the
server -- what a job on another machine needs. Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cvsweep.server import free_port, remote_security, server_command
from tests.conftest import run_cvsweep
from tests.test_ui import DATA, RUN_NAME, CliProcess, child_env, port_open, train

# The tests share a module-scoped fixture: pytest-xdist runs them all on one worker.
pytestmark = pytest.mark.xdist_group("server")

# Before this process imports mlflow (MlflowClient below): MLflow decides on telemetry at import.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

ARTIFACTS = ("model.pth", "curves.png", "config/config.yaml")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A running `cvsweep server` on a fresh store: its folder, port, printed tracking URI."""
    if not (DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data not found at {DATA} (set CVSWEEP_DATA)")
    tmp = tmp_path_factory.mktemp("server_store")
    port = free_port()
    cli = CliProcess(
        ["server", "--port", str(port), "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}"],
        cwd=tmp,
    )
    try:
        uri = cli.wait_for(r"(?m)^tracking\.uri=(\S+)$").group(1)
        yield {"tmp": tmp, "port": port, "uri": uri, "cli": cli}
    finally:
        code = cli.stop()
    assert code == 0, f"cvsweep server exited with {code} on SIGTERM:\n{cli.output}"
    assert not port_open(port), "the MLflow server still listens after cvsweep server stopped"


@pytest.fixture(scope="module")
def job_run_id(server: dict[str, Any]) -> str:
    """Run id of one real training job logged through the server."""
    proc = train(server["tmp"], server["uri"])
    return re.search(r"mlflow run: (\w+)", proc.stdout).group(1)  # type: ignore[union-attr]


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """MlflowClient uses requests, which honours proxy variables; keep it on 127.0.0.1."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.mark.slow
def test_server_prints_the_uri_to_paste(server: dict[str, Any]) -> None:
    assert server["uri"] == f"http://127.0.0.1:{server['port']}"
    # a fresh store has no experiment yet: no link, and the banner says so
    assert "experiment 'cvsweep' does not exist in this store yet" in server["cli"].output
    assert "(new: nothing was logged here before)" in server["cli"].output


@pytest.mark.slow
@pytest.mark.usefixtures("loopback_only")
def test_job_logs_through_the_server(
    server: dict[str, Any], job_run_id: str, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server["uri"])
    exp = client.get_experiment_by_name("cvsweep")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == [job_run_id]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.info.run_name == RUN_NAME

    history = client.get_metric_history(job_run_id, "test_acc")
    steps = [m.step for m in history]
    assert len(history) >= 3 and steps == sorted(steps) and steps[-1] == 8  # 256 / 32 batches
    assert all(0.0 <= m.value <= 1.0 for m in history)

    # proxied artifacts: uploaded through the server into <store>/mlartifacts
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    names = {a.path for a in client.list_artifacts(job_run_id)}
    assert {"model.pth", "curves.png", "config"} <= names
    stored = server["tmp"] / "mlartifacts" / exp.experiment_id / job_run_id / "artifacts"
    local = {}
    for path in ARTIFACTS:
        local[path] = Path(client.download_artifacts(job_run_id, path, str(tmp_path / path)))
        assert local[path].stat().st_size > 0
        assert local[path].read_bytes() == (stored / path).read_bytes()
    assert local["curves.png"].read_bytes().startswith(b"\x89PNG")
    assert "trainer:" in local["config/config.yaml"].read_text()

    # the UI's own download link answers too
    status, body = get(server["port"], f"/get-artifact?path=model.pth&run_uuid={job_run_id}")
    assert status == 200 and body == local["model.pth"].read_bytes()


@pytest.mark.slow
def test_runs_logged_through_the_server_are_read_from_the_store_file(
    server: dict[str, Any], job_run_id: str, tmp_path: Path
) -> None:
    """The store file names the run's artifacts `mlflow-artifacts:/...`, which only a server
    resolves; the commands read them from mlartifacts/ beside the file instead, so a stopped
    server's runs can still be evaluated, and where that folder is missing they say so."""
    import shutil

    db = server["tmp"] / "mlflow.db"
    evaluate = ["evaluate", job_run_id, "--tracking-uri", str(db)]
    proc = run_cvsweep(evaluate, tmp_path, child_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert re.search(r"the run logged [\d.]+% on these images: the same", proc.stdout), proc.stdout

    # The same runs copied elsewhere without their artifacts folder: named, not MLflow's words.
    shutil.copy(db, tmp_path / "mlflow.db")
    copy = ["evaluate", job_run_id, "--tracking-uri", str(tmp_path / "mlflow.db")]
    proc = run_cvsweep(copy, tmp_path, child_env(), timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    err = proc.stderr
    assert f"Run {job_run_id} was logged through a tracking server" in err, err
    assert f"they are not in {tmp_path / 'mlartifacts'}" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err

    # A rerun reads its config from there too, and then names why it cannot log to the file.
    proc = run_cvsweep(["rerun", *evaluate[1:]], tmp_path, child_env(), timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "was created through a tracking server" in proc.stderr, proc.stderr
    assert "no logged config" not in proc.stderr
    # The server to start is the one over this store (a bare one serves ./mlflow.db), and the
    # rerun's way to log through it is its own flag.
    said = proc.stderr
    assert f"`cvsweep server --tracking-uri {db}`" in said, said
    assert "--tracking-uri ADDRESS for cvsweep rerun" in said, said


def get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    """GET from the loopback server with an explicit Host header (default: 127.0.0.1:port)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host or f"127.0.0.1:{port}"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.slow
def test_foreign_host_header_is_refused(server: dict[str, Any]) -> None:
    """MLflow's DNS-rebinding protection: a page on evil.example.com must not reach the API."""
    port = server["port"]
    api = "/api/2.0/mlflow/experiments/search?max_results=5"
    assert get(port, api, host="evil.example.com")[0] == 403
    assert get(port, "/", host=f"evil.example.com:{port}")[0] == 403
    assert get(port, api)[0] == 200
    assert get(port, api, host=f"localhost:{port}")[0] == 200


def test_remote_bind_keeps_host_protection() -> None:
    """--allow-remote passes explicit --allowed-hosts: this machine's name in, foreign names out."""
    from mlflow.server.security_utils import is_allowed_host_header

    hosts, origins = remote_security("0.0.0.0", 5000)
    allowed = hosts.split(",")
    name = socket.gethostname()
    assert is_allowed_host_header(allowed, f"{name}:5000")
    assert is_allowed_host_header(allowed, "127.0.0.1:5000")
    assert is_allowed_host_header(allowed, "192.168.1.20:5000")
    assert not is_allowed_host_header(allowed, "evil.example.com")
    assert not is_allowed_host_header(allowed, "evil.example.com:5000")
    assert "*" not in allowed
    assert origins and all(re.fullmatch(r"http://[^*,]+:5000", o) for o in origins.split(","))
    cmd = server_command("sqlite:////x/mlflow.db", "0.0.0.0", 5000, allowed_hosts=hosts)
    assert cmd[cmd.index("--allowed-hosts") + 1] == hosts
    assert cmd[cmd.index("--artifacts-destination") + 1] == "file:///x/mlartifacts"


@pytest.mark.parametrize("command", ["ui", "server"])
def test_a_store_that_is_no_store_or_a_mistyped_path_is_named_before_mlflow_starts(
    command: str, tmp_path: Path
) -> None:
    """A text file gave MLflow's traceback, a folder minutes of retries, and a mistyped path a
    new folder with an empty store in it."""
    (tmp_path / "notes.txt").write_text("not a store\n")
    (tmp_path / "runs.db").mkdir()
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "mlflow.db").touch()
    for target, message in (
        ("notes.txt", "is not an MLflow database: it is not even an SQLite file"),
        ("runs.db", "is a folder, not an MLflow database file; point --tracking-uri at the"),
        (
            "project",
            f"is a folder, not an MLflow database file; the store in it is "
            f"{tmp_path / 'project' / 'mlflow.db'}: pass --tracking-uri",
        ),
        ("typo/mlflow.db", f"There is no folder {tmp_path / 'typo'} for the store mlflow.db"),
    ):
        uri = f"sqlite:///{tmp_path / target}"
        proc = run_cvsweep([command, "--tracking-uri", uri], tmp_path, child_env(), timeout=60)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and "mv " not in proc.stderr
    assert not (tmp_path / "typo").exists()
    assert (tmp_path / "notes.txt").read_text() == "not a store\n"


def test_remote_host_without_allow_remote_exits_2(tmp_path: Path) -> None:
    proc = run_cvsweep(["server", "--host", "0.0.0.0"], tmp_path, child_env(), timeout=60)
    assert proc.returncode == 2 and "--allow-remote" in proc.stderr


def test_allow_remote_warns_and_names_basic_auth(tmp_path: Path) -> None:
    """The --allow-remote path up to the bind; 203.0.113.5 (TEST-NET-3) is not ours to bind."""
    proc = run_cvsweep(
        ["server", "--host", "203.0.113.5", "--allow-remote"], tmp_path, child_env(), timeout=60
    )
    assert proc.returncode == 1, proc.stderr
    assert "WARNING: binding 203.0.113.5:5000 without authentication" in proc.stderr
    assert "--app-name basic-auth" in proc.stderr and "--allowed-hosts" in proc.stderr
    assert "cannot listen on 203.0.113.5:5000" in proc.stderr
    assert "address of this machine" in proc.stderr
