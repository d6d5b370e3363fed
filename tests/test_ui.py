"""`cvsweep ui` on a real store: the printed runs link, the REST API behind it, and a browser.

A real `python train.py` run builds the store once per module; `cvsweep ui` runs as a real
subprocess on a free loopback port and is always stopped (SIGTERM, then its process group) so no
server outlives the tests. Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cvsweep.server import free_port
from tests.conftest import run_cvsweep

# The tests share a module-scoped fixture: pytest-xdist runs them all on one worker.
pytestmark = pytest.mark.xdist_group("ui")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CVSWEEP_DATA") or REPO.parent / "shared" / "data")
CHROMIUM = Path("/usr/bin/chromium")
# batch_size=32 gives 8 steps: the default onecycle schedule fails on <= 4 steps (see optim.py);
# test_limit keeps the 4 evaluations quick.
RUN_OVERRIDES = [
    "trainer.epochs=1",
    "dataset.train_limit=256",
    "dataset.test_limit=1000",
    "trainer.batch_size=32",
    "trainer.log_every=2",
    "trainer.progress=off",
]
RUN_NAME = " ".join(RUN_OVERRIDES)  # job.run_name: the overrides that define the job
START_TIMEOUT = 180.0  # MLflow's first start migrates a fresh database; slow on a busy box


def child_env() -> dict[str, str]:
    """The user's environment minus MLflow/proxy settings that could send requests elsewhere."""
    drop = ("MLFLOW_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        CVSWEEP_DATA=str(DATA),
        PYTHONUNBUFFERED="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def train(tmp: Path, uri: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The real CLI, `python train.py ...`, from the repository root, outputs under tmp."""
    cmd = [
        sys.executable,
        "train.py",
        *RUN_OVERRIDES,
        f"tracking.uri={uri}",
        f"hydra.run.dir={tmp / 'run'}",
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"train.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


class CliProcess:
    """`python -m cvsweep.cli ARGS` in the background, its output collected line by line."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cvsweep.cli", *args],
            cwd=cwd,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """First match of pattern in the output; fails early when the process has exited."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.output)
            if match:
                return match
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                match = re.search(pattern, self.output)
                if match:
                    return match
                pytest.fail(
                    f"exited with {self.proc.returncode} before {pattern!r}:\n{self.output}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no {pattern!r} after {timeout:.0f} s:\n{self.output}")
            time.sleep(0.2)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (what Ctrl-C/kill do), then make sure nothing it started is left running."""
        children = _children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in children:  # cvsweep starts `mlflow server` as leader of its own group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self._reader.join(timeout=5)
        return self.proc.returncode


def _children(pid: int) -> list[int]:
    """Direct children of pid, from /proc (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def api(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One MLflow REST call, straight to the loopback server (no proxy)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + path, data=data, headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(folder, sqlite URI) of a store with one finished run, written by the real CLI."""
    if not (DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data not found at {DATA} (set CVSWEEP_DATA)")
    tmp = tmp_path_factory.mktemp("ui_store")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    train(tmp, uri)
    return tmp, uri


@pytest.fixture(scope="module")
def ui(store: tuple[Path, str]) -> Iterator[dict[str, Any]]:
    """A running `cvsweep ui` on the store: its URL, printed runs link and process."""
    tmp, uri = store
    port = free_port()
    cli = CliProcess(["ui", "--port", str(port), "--tracking-uri", uri], cwd=tmp)
    try:
        link = cli.wait_for(r"http://127\.0\.0\.1:\d+/#/experiments/\d+/runs\?\S+").group(0)
        yield {"url": f"http://127.0.0.1:{port}", "link": link, "cli": cli, "tmp": tmp}
    finally:
        code = cli.stop()
    assert code == 0, f"cvsweep ui exited with {code} on SIGTERM:\n{cli.output}"
    assert not port_open(port), "the MLflow server still listens after cvsweep ui stopped"


@pytest.mark.slow
def test_ui_prints_runs_link_and_serves_the_run(ui: dict[str, Any]) -> None:
    url, link = ui["url"], ui["link"]
    assert link.endswith("/runs?workflowType=machine_learning")
    assert f"MLflow UI: {url}" in ui["cli"].output
    exp = api(url, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=cvsweep")["experiment"]
    assert link == f"{url}/#/experiments/{exp['experiment_id']}/runs?workflowType=machine_learning"
    runs = api(url, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]]})
    assert [r["info"]["run_name"] for r in runs["runs"]] == [RUN_NAME]
    assert runs["runs"][0]["info"]["status"] == "FINISHED"


@pytest.mark.slow
@pytest.mark.browser
def test_browser_shows_the_run_in_the_runs_table(ui: dict[str, Any]) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    shot = ui["tmp"] / "runs_table.png"
    blocked: list[str] = []

    def loopback_only(route: Any) -> None:
        if urllib.parse.urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route("**/*", loopback_only)
            page.goto(ui["link"])
            try:
                page.get_by_text(RUN_NAME).first.wait_for(timeout=90_000)
            finally:
                page.screenshot(path=str(shot))
        finally:
            browser.close()
    print(f"screenshot: {shot}; requests blocked (not loopback): {blocked}")
    assert shot.stat().st_size > 10_000


def test_remote_host_needs_allow_remote(tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = run_cvsweep(
        ["ui", "--host", "0.0.0.0", "--port", "1"], tmp_path, child_env(), timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert "--allow-remote" in proc.stderr
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "mlflow.db").exists()


def test_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cvsweep(["ui", "--port", str(port)], tmp_path, child_env(), timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr
    assert "--port" in proc.stderr
