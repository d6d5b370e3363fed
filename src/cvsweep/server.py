"""`cvsweep ui` and `cvsweep server`: MLflow's own server, started right for cvsweep's store.

Nothing here re-implements MLflow: it runs `python -m mlflow server` as a child process and only
decides the flags -- the SQLite store train.py writes, the `mlartifacts` folder beside it (where
cvsweep's experiments keep their artifacts), loopback binding unless told otherwise -- and prints
the link a person needs: the runs table, which today's UI hides behind its GenAI view.

The child runs in a session of its own, so one Ctrl-C is forwarded exactly once, and stopping
kills the whole process group: `mlflow server` spawns uvicorn (and, when job execution is on,
huey consumers) that would otherwise outlive it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

from .store_errors import StoreError, check_sqlite_store
from .tracking import (
    TrackingError,
    resolve_uri,
    restore_command,
    sqlite_path,
    store_creation_lock,
)

RUNS_VIEW = "runs?workflowType=machine_learning"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
#: Host-header patterns MLflow allows by default (localhost, private IPv4/IPv6 ranges); kept when
#: we pass --allowed-hosts for a remote bind so that naming this machine never narrows them.
MLFLOW_DEFAULT_HOST_PATTERNS = (
    "localhost",
    "127.0.0.1",
    "[::1]",
    "localhost:*",
    "127.0.0.1:*",
    "[[]::1]:*",
    "10.*",
    "192.168.*",
    *(f"172.{i}.*" for i in range(16, 32)),
    "fc00:*",
    "fd00:*",
)
#: Env defaults for the child (the user's environment wins): MLflow's job runner -- huey consumer
#: processes for GenAI scorers -- is of no use to cvsweep, costs seconds and memory, and survives
#: a SIGTERM to `mlflow server` unless its process group is killed.
#: The rest keeps the terminal to cvsweep's banner plus warnings and errors: MLflow's INFO lines
#: (database set-up), uvicorn's start-up lines and its line per HTTP request, and a deprecation
#: warning about MLflow's own imports. `MLFLOW_UVICORN_OPTS="--log-level info"` and
#: `MLFLOW_LOGGING_LEVEL=INFO` bring them back (docs/tracking-server.md).
CHILD_ENV_DEFAULTS = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_UVICORN_OPTS": "--log-level warning --no-access-log",
    "PYTHONWARNINGS": "ignore:starlette.middleware.wsgi is deprecated:UserWarning",
}
STOP_TIMEOUT_S = 15.0
START_TIMEOUT_S = 180.0  # a first start migrates a fresh database; slow on a busy machine


class ServerError(RuntimeError):
    """The MLflow server could not be started or did not come up; the message says why."""


class _Stop(Exception):
    """Raised in the main thread by our SIGINT/SIGTERM handler, so both stop the same way."""


# --------------------------------------------------------------------------- building blocks
def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`: addresses only this machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def local_url(host: str, port: int) -> str:
    """URL that reaches a server bound to host from this machine (wildcards -> 127.0.0.1)."""
    reach = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://{_url_host(reach)}:{port}"


def artifacts_destination(uri: str) -> Path:
    """`mlartifacts` beside the SQLite db: the artifact_location cvsweep's experiments use."""
    db = sqlite_path(uri)
    base = db.parent if db is not None else Path.cwd()
    return (base / "mlartifacts").resolve()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for tests and scripts that start servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port(host: str, port: int) -> None:
    """Raise ServerError when host:port cannot be bound -- before MLflow spends seconds starting.

    SO_REUSEADDR like uvicorn's own socket, so a port in TIME_WAIT counts as free, as it is.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
        except OSError as exc:
            why = (
                "another MLflow server (or `cvsweep ui`) may be running there; open it, or "
                "choose a free port with --port N"
                if exc.errno == errno.EADDRINUSE
                else f"is {host} an address of this machine?"
            )
            end = "" if why.endswith("?") else "."
            raise ServerError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; {why}{end}"
            ) from None


def outward_address() -> str | None:
    """This machine's address on its default route, or None (no route, or only loopback).

    Connecting a UDP socket sends nothing: the kernel only picks the interface it would use.
    192.0.2.1 (TEST-NET-1) is never contacted.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            address = str(s.getsockname()[0])
    except OSError:
        return None
    return None if address in WILDCARD_HOSTS or is_loopback(address) else address


def resolves_beyond_loopback(name: str) -> bool:
    """Does name resolve here to an address other machines could use? /etc/hosts often maps
    the hostname (and so the FQDN) to 127.0.0.1, which names nothing for them."""
    try:
        infos = socket.getaddrinfo(name, None)
    except (OSError, UnicodeError):
        return False
    return any(not is_loopback(str(info[4][0])) for info in infos)


def machine_names(host: str) -> list[str]:
    """Names other machines may use for this one: the bound address, hostname, FQDN and, for a
    wildcard bind, the address of the default route (so the printed hint is never refused)."""
    names: list[str] = []
    outward = outward_address() if host in WILDCARD_HOSTS else None
    for name in (host, socket.gethostname(), socket.getfqdn(), outward):
        if name and name not in WILDCARD_HOSTS and not is_loopback(name) and name not in names:
            names.append(name)
    return names


def reachable_name(host: str) -> str | None:
    """The name or address to give other machines, or None when none could be found.

    A specific bind address is it; for a wildcard bind, a dotted FQDN that resolves beyond
    loopback, else the default route's address, else a hostname that resolves beyond loopback.
    """
    if host not in WILDCARD_HOSTS:
        return None if is_loopback(host) else host
    fqdn, hostname = socket.getfqdn(), socket.gethostname()
    if "." in fqdn and not is_loopback(fqdn) and resolves_beyond_loopback(fqdn):
        return fqdn
    outward = outward_address()
    if outward:
        return outward
    if hostname and not is_loopback(hostname) and resolves_beyond_loopback(hostname):
        return hostname
    return None


def remote_hint(host: str, port: int) -> str:
    """The banner line that tells jobs on other machines which tracking.uri to use."""
    name = reachable_name(host)
    if name is not None:
        return f"(from other machines: tracking.uri=http://{_url_host(name)}:{port})"
    return (
        "(from other machines: no name or address of this machine other than loopback was "
        "found; `hostname -I` lists its addresses: use tracking.uri=http://ADDRESS:"
        f"{port}, and add ADDRESS to MLFLOW_SERVER_ALLOWED_HOSTS if it is not a private one)"
    )


def remote_security(host: str, port: int) -> tuple[str, str]:
    """(--allowed-hosts, --cors-allowed-origins) for a bind other machines can reach.

    MLflow's defaults (localhost and private IPs) stay; this machine's names are added, each with
    and without the port, so a browser elsewhere that uses them is served while a foreign Host
    header (DNS rebinding) is still refused.
    """
    names = machine_names(host)
    hosts = [*MLFLOW_DEFAULT_HOST_PATTERNS]
    for name in names:
        hosts += [_url_host(name), f"{_url_host(name)}:{port}"]
    origins = [f"http://{_url_host(name)}:{port}" for name in names]
    return ",".join(dict.fromkeys(hosts)), ",".join(origins)


def server_command(
    uri: str,
    host: str,
    port: int,
    *,
    artifacts: Path | None = None,
    allowed_hosts: str | None = None,
    cors_allowed_origins: str | None = None,
    workers: int = 1,
    extra: Sequence[str] = (),
) -> list[str]:
    """The `mlflow server` command line: store, proxied artifacts, bind, one worker."""
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--registry-store-uri",  # the same store; said, so MLflow does not announce the default
        uri,
        "--serve-artifacts",
        "--artifacts-destination",
        (artifacts or artifacts_destination(uri)).as_uri(),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    if cors_allowed_origins:
        cmd += ["--cors-allowed-origins", cors_allowed_origins]
    return [*cmd, *extra]


def start_server(
    uri: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    *,
    artifacts: Path | None = None,
    allowed_hosts: str | None = None,
    cors_allowed_origins: str | None = None,
    env: Mapping[str, str] | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `mlflow server` for uri in the background; stop it with `stop_server`.

    The child leads a new session (process group), so `stop_server` can reach uvicorn and any
    helper MLflow starts, and a terminal's Ctrl-C reaches it only through us.
    """
    check_port(host, port)
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**CHILD_ENV_DEFAULTS, **(os.environ if env is None else env)}
    cmd = server_command(
        uri,
        host,
        port,
        artifacts=artifacts,
        allowed_hosts=allowed_hosts,
        cors_allowed_origins=cors_allowed_origins,
    )
    return subprocess.Popen(
        cmd, env=child_env, stdout=stdout, stderr=stderr, start_new_session=True
    )


def _http_get(url: str, timeout: float) -> int:
    """Status of a GET to url, never through a proxy (the server is on this machine)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_ready(url: str, timeout: float = 120.0, proc: subprocess.Popen[Any] | None = None) -> None:
    """Block until url's /health answers 200; ServerError on timeout or when proc exits first.

    MLflow needs several seconds to start (imports, database migrations), more on a busy box.
    """
    deadline = time.monotonic() + timeout
    health = url.rstrip("/") + "/health"
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServerError(
                f"the MLflow server exited with code {proc.returncode} before it was ready "
                "(its messages are above)"
            )
        try:
            if _http_get(health, timeout=2.0) == 200:
                return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise ServerError(f"the MLflow server at {url} was not ready after {timeout:.0f} s")
        time.sleep(0.25)


def stop_server(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM the server (MLflow forwards it to uvicorn), then clear its whole process group.

    Returns the exit code of `mlflow server`; whatever is left of its group after it exits, or
    after timeout, gets SIGKILL so nothing outlives us.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=5)
    return proc.returncode


def _find_experiment(url: str, name: str) -> tuple[str, str] | None:
    """(id, lifecycle stage) of the experiment called name on the server at url, or None."""
    from mlflow import MlflowClient

    exp = MlflowClient(tracking_uri=url).get_experiment_by_name(name)
    return None if exp is None else (str(exp.experiment_id), str(exp.lifecycle_stage))


def experiment_id(url: str, name: str) -> str | None:
    """Id of the active experiment called name on the server at url, or None when there is none."""
    found = _find_experiment(url, name)
    return found[0] if found is not None and found[1] == "active" else None


def runs_link(url: str, exp_id: str) -> str:
    """The runs table of an experiment; plain `#/experiments/<id>` opens the GenAI traces view."""
    return f"{url}/#/experiments/{exp_id}/{RUNS_VIEW}"


def train_command(experiment: str) -> str:
    """The `python train.py` that logs to experiment: a plain one logs to the configured default
    (cvsweep), so any other experiment needs its override."""
    from .config import TrackingConfig

    if experiment == TrackingConfig().experiment:
        return "python train.py"
    return shlex.join(["python", "train.py", f"tracking.experiment={experiment}"])


# --------------------------------------------------------------------------- the command
def _say(line: str = "") -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _check_args(args: argparse.Namespace) -> str | None:
    """Usage problems (exit 2) before anything starts; None when the arguments are fine."""
    if not 0 < int(args.port) < 65536:
        return f"--port {args.port} is not a TCP port (1-65535)"
    if not is_loopback(args.host) and not args.allow_remote:
        return (
            f"--host {args.host} would let other machines reach this MLflow server, which has "
            "no login: anyone who reaches it can read and delete runs. Pass --allow-remote to "
            "bind it anyway, or leave --host at 127.0.0.1."
        )
    return None


def _print_banner(
    args: argparse.Namespace, ui_only: bool, uri: str, url: str, new_store: bool
) -> None:
    exp_id = deleted_id = None
    lookup_failed = False
    try:
        found = _find_experiment(url, args.experiment)
        if found is not None:
            exp_id, deleted_id = (found[0], None) if found[1] == "active" else (None, found[0])
    except Exception as exc:  # the server runs anyway; the link is a convenience
        lookup_failed = True
        _err(f"warning: cannot look up experiment {args.experiment!r}: {exc}")
    _say()
    _say(f"MLflow {'UI' if ui_only else 'tracking server'}: {url}")
    if exp_id is not None:
        _say(f"runs of experiment {args.experiment!r}: {runs_link(url, exp_id)}")
    elif lookup_failed:
        _say(f'runs: open {url} and choose "Model training"')
    elif deleted_id is not None:  # train.py refuses a deleted experiment: say how to restore it
        _say(
            f"experiment {args.experiment!r} is deleted in this store (id {deleted_id}), with its "
            f"runs; `{restore_command(url, deleted_id)}` brings them back, and train.py logs "
            f'to it again. Open {url} and choose "Model training" to see other runs.'
        )
    else:
        _say(
            f"experiment {args.experiment!r} does not exist in this store yet; it appears after "
            f"the first `{train_command(args.experiment)}` with this store. Open {url} and "
            'choose "Model training" to see runs.'
        )
    _say(f"store: {uri}" + ("  (new: nothing was logged here before)" if new_store else ""))
    _say(f"artifacts: {artifacts_destination(uri)}")
    if not ui_only:
        _say("for jobs (parallel sweeps, other processes), pass:")
        _say(f"tracking.uri={url}")
        if not is_loopback(args.host):
            _say(remote_hint(args.host, args.port))
    _say("Ctrl-C stops it.")
    _say()


def serve(args: argparse.Namespace, ui_only: bool) -> int:
    """Run MLflow's server for cvsweep's store in the foreground until Ctrl-C or SIGTERM.

    Exit codes: 0 after a requested stop, 2 for usage errors (non-loopback --host without
    --allow-remote, an http store), 1 when the server cannot start or dies on its own.
    """
    problem = _check_args(args)
    if problem:
        _err(f"error: {problem}")
        return 2
    # The environment's store is checked like --tracking-uri: MLflow answers a bare path (a file
    # store) or a malformed URI with a traceback.
    given, name = args.tracking_uri, "--tracking-uri"
    if not given and os.environ.get("MLFLOW_TRACKING_URI"):
        given, name = os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI"
    try:
        uri = resolve_uri(given, name=name)
    except TrackingError as exc:
        _err(f"error: {exc}")
        return 2
    problem = _unservable(uri, name)
    if problem:
        _err(f"error: {problem}")
        return 2
    if uri.startswith(("http://", "https://")):
        _err(
            f"error: {uri} is already a tracking server: open it in a browser. `cvsweep "
            f"{'ui' if ui_only else 'server'}` serves a store (sqlite:///path/to/mlflow.db)."
        )
        return 2
    db = sqlite_path(uri)
    new_store = db is not None and _new_store(db)
    if db is not None:
        problem = _store_problem(db, new_store)
        if problem:
            _err(f"error: {problem}")
            return 2

    allowed_hosts = cors = None
    if not is_loopback(args.host):
        allowed_hosts, cors = remote_security(args.host, args.port)
        # The user's own MLFLOW_SERVER_* settings win: MLflow reads them when no flag is given.
        if os.environ.get("MLFLOW_SERVER_ALLOWED_HOSTS"):
            allowed_hosts = None
        if os.environ.get("MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"):
            cors = None
        auth_cmd = server_command(
            uri,
            args.host,
            args.port,
            allowed_hosts=allowed_hosts,
            cors_allowed_origins=cors,
            extra=["--app-name", "basic-auth"],
        )
        _err(
            f"WARNING: binding {args.host}:{args.port} without authentication; anyone who can "
            "reach it can read, change and delete runs. Accepted Host headers: "
            + (
                f"localhost, private IPs, {', '.join(machine_names(args.host)) or '-'}"
                if allowed_hosts
                else os.environ["MLFLOW_SERVER_ALLOWED_HOSTS"]
            )
            + " (set MLFLOW_SERVER_ALLOWED_HOSTS to change). For a shared server, run MLflow "
            "with a login (--app-name basic-auth) instead:\n  " + shlex.join(auth_cmd)
        )
    elif args.host.lower() not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        # MLflow's default Host check knows only these loopback names: on another loopback
        # address (127.0.0.2) the UI's own link, and jobs using it, would get 403.
        bound = _url_host(args.host)
        if not os.environ.get("MLFLOW_SERVER_ALLOWED_HOSTS"):
            allowed_hosts = ",".join([*MLFLOW_DEFAULT_HOST_PATTERNS, bound, f"{bound}:{args.port}"])
        if not os.environ.get("MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"):
            cors = f"http://{bound}:{args.port}"

    url = local_url(args.host, args.port)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    proc: subprocess.Popen[bytes] | None = None
    try:
        # MLflow's server makes a new store's tables as it starts, under the lock a first run
        # takes for the same (tracking.store_creation_lock): a run started meanwhile waits for
        # them instead of making them alongside. `mlflow server` makes them before its web
        # server starts, so once wait_ready has an answer they are there.
        first_open = (
            store_creation_lock(db) if db is not None and new_store else contextlib.nullcontext()
        )
        with first_open:
            proc = start_server(
                uri, args.host, args.port, allowed_hosts=allowed_hosts, cors_allowed_origins=cors
            )
            wait_ready(url, START_TIMEOUT_S, proc=proc)
        _print_banner(args, ui_only, uri, url, new_store)
        code = proc.wait()
        if code < 0:  # killed by a signal: say which; an exit status must be 0-255
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"stopped by itself with exit code {code}"
        _err(f"error: the MLflow server {how} (its messages, if any, are above)")
        return code if code > 0 else 1
    except ServerError as exc:
        _err(f"error: {exc}")
        return 1
    except _Stop:
        _say("stopping the MLflow server ...")
        return 0
    finally:
        if proc is not None:
            _shutdown(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _unservable(uri: str, name: str) -> str | None:
    """Stores MLflow's server would refuse with a traceback, named in one paragraph instead."""
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower()
    if scheme == "file" and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in (
        "true",
        "1",
    ):
        return (
            f"{name}={uri!r} is an MLflow file store (a folder like ./mlruns), which this MLflow "
            "no longer serves, and not the store train.py writes. Point it at an SQLite store "
            "(sqlite:///path/to/mlflow.db); `mlflow migrate-filestore` copies a file store's "
            "runs into one."
        )
    if scheme == "sqlite" and not uri.startswith("sqlite:///"):
        return (
            f"{name}={uri!r} is not an SQLite store URI: the path follows three slashes "
            "(sqlite:///relative/mlflow.db, sqlite:////absolute/mlflow.db)."
        )
    if scheme in ("postgresql", "mysql", "mssql"):
        try:
            from sqlalchemy.engine import make_url

            make_url(uri).get_dialect().import_dbapi()
        except ImportError as exc:
            return (
                f"{name} names a {scheme} store, but its database driver is not installed "
                f"({exc}). Install the driver MLflow's documentation names for {scheme}, or "
                "use an SQLite store (sqlite:///path/to/mlflow.db)."
            )
        except Exception:  # a malformed URL: MLflow's own message names it
            return None
    return None


def _new_store(db: Path) -> bool:
    """No store at db yet: no file, or an empty one (`touch mlflow.db`).

    SQLite reads a 0-byte file as an empty database, so MLflow fills it as it would a missing
    one, and train.py logs to it the same way; there is nothing in it to lose.
    """
    try:
        return not db.exists() or (db.is_file() and db.stat().st_size == 0)
    except OSError:
        return False  # unreadable: check_sqlite_store names why


def _store_problem(db: Path, new: bool) -> str | None:
    """What keeps MLflow from serving this SQLite store, in one paragraph, before it starts.

    A new store is made only in a folder that exists: a mistyped path is not created. An
    existing file must be an MLflow store, or MLflow prints a traceback (a text file) or
    retries for minutes (a folder).
    """
    if new and db.exists():
        return None  # an empty file: MLflow makes its tables in it
    if new:
        if not db.parent.is_dir():
            return (
                f"There is no folder {db.parent} for the store {db.name}: a mistyped path is not "
                "created. Point --tracking-uri at a store that exists (sqlite:///path/to/mlflow.db), "
                "or create the folder first for a new one."
            )
        return None
    try:
        check_sqlite_store(db, served=True)
    except StoreError as exc:
        return str(exc)
    return None


def _shutdown(proc: subprocess.Popen[Any]) -> None:
    """Stop the server gracefully; a second Ctrl-C/SIGTERM meanwhile kills it at once."""
    try:
        stop_server(proc)
    except _Stop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        stop_server(proc, timeout=0)


__all__ = [
    "ServerError",
    "artifacts_destination",
    "check_port",
    "experiment_id",
    "free_port",
    "is_loopback",
    "local_url",
    "reachable_name",
    "remote_hint",
    "remote_security",
    "runs_link",
    "serve",
    "server_command",
    "start_server",
    "stop_server",
    "train_command",
    "wait_ready",
]
