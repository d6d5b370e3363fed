"""MLflow as the record of every run: store resolution, experiment setup, one tracker per run.

Everything goes through `MlflowClient` with explicit run ids (no fluent "active run" state), so
a sweep's parent and its children never get mixed up, and parallel jobs can share one store.
SQLite answers "database is locked" when several processes write at once; every call here is
retried with backoff so no point is lost.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import shlex
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .outputs import nearest_existing

T = TypeVar("T")

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message says which store and why."""


def default_uri(launch_dir: Path | None = None) -> str:
    """sqlite:///<launch folder>/mlflow.db, unless MLFLOW_TRACKING_URI says otherwise."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    base = Path(launch_dir or os.getcwd()).resolve()
    return f"sqlite:///{base / 'mlflow.db'}"


def store_flag(uri: str) -> str:
    """` --tracking-uri URI` for a command suggested to the user, unless URI is the store
    such a command would open anyway (the default here)."""
    if uri == default_uri():
        return ""
    return f" --tracking-uri {shlex.quote(uri)}"


def restore_command(uri: str, experiment_id: str) -> str:
    """The `mlflow experiments restore` that acts on uri. That command has no store option
    and reads MLFLOW_TRACKING_URI, so the store is named there unless it is the default here:
    copied as printed, it must never restore (or fail to find) an experiment in another store."""
    command = f"mlflow experiments restore --experiment-id {shlex.quote(str(experiment_id))}"
    if uri == default_uri():
        return command
    return f"MLFLOW_TRACKING_URI={shlex.quote(uri)} {command}"


# The tracking-store schemes MLflow accepts (file:// stores are deprecated by MLflow).
STORE_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file", "databricks")


def resolve_uri(uri: str | None, launch_dir: Path | None = None, name: str = "tracking.uri") -> str:
    """Make a store URI absolute so every job of a sweep, whatever its cwd, hits one store.

    `name` is how the user gave it (`--tracking-uri` for commands), for messages.
    """
    if not uri:
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:  # checked as tracking.uri is, and named as the user set it
            return resolve_uri(env, launch_dir, "MLFLOW_TRACKING_URI")
        return default_uri(launch_dir)
    if uri in ("sqlite://", "sqlite:///:memory:"):
        raise TrackingError(
            f"{name}={uri!r} is an in-memory SQLite store: everything logged would be gone when "
            "the process ends (and SQLite would put a file named ':memory:' beside you). Use "
            "sqlite:///path/to/mlflow.db, or tracking=none for a run that logs nothing."
        )
    if uri.startswith("sqlite:///"):
        if "\x00" in str(sqlite_path(uri)):
            raise TrackingError(
                f"{name}={uri!r}: its path holds %00, which MLflow's database layer decodes to "
                "a NUL byte, and no file name can hold one. Use sqlite:///path/to/mlflow.db."
            )
        path = Path(uri[len("sqlite:///") :])
        if not path.is_absolute():
            path = (Path(launch_dir or os.getcwd()) / path).resolve()
        return f"sqlite:///{path}"
    if "://" not in uri:
        raise TrackingError(
            f"{name}={uri!r} is not a store URI. Use sqlite:///path/to/mlflow.db or "
            "http://127.0.0.1:PORT (a tracking server)."
        )
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower()  # postgresql+psycopg2://...
    if scheme not in STORE_SCHEMES:
        raise TrackingError(
            f"{name}={uri!r}: MLflow cannot keep runs in a {scheme!r} store. Use "
            "sqlite:///path/to/mlflow.db, http://HOST:PORT (a tracking server), or a database "
            "MLflow supports (postgresql://, mysql://, mssql://)."
        )
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The file an sqlite:/// URI opens. SQLAlchemy decodes its %-escapes (`a%20b.db` is
    `a b.db`), so every check looks at that file, not at one the URI only spells."""
    from urllib.parse import unquote

    return Path(unquote(uri[len("sqlite:///") :])) if uri.startswith("sqlite:///") else None


UNREACHABLE_CAUSES = (
    "connection refused",
    "failed to establish a new connection",
    "name or service not known",
    "remote end closed connection",
    "connection aborted",
)


def unreachable_cause(exc: BaseException) -> str | None:
    """Which of UNREACHABLE_CAUSES made a call fail (nothing answers at the store's address)."""
    text = f"{type(exc).__name__}: {exc}".lower()
    return next((cause for cause in UNREACHABLE_CAUSES if cause in text), None)


def unreachable(exc: BaseException) -> bool:
    """Did a call fail because nothing answers at the store's address?

    MLflow has retried an HTTP call by the time it raises this, so retrying it again only
    makes a job wait longer for a server that is gone.
    """
    return unreachable_cause(exc) is not None


# What OpenSSL says when an https:// client gets a plain-HTTP answer to its TLS handshake;
# the wording differs between OpenSSL versions.
PLAIN_HTTP_ANSWERS = ("wrong version number", "record layer failure", "packet length too long")


def plain_http_answer(exc: BaseException) -> bool:
    """Did an https:// call fail because the server answered in plain HTTP?

    The OpenSSL error arrives as urllib's URLError around ssl.SSLError, or, through MLflow, as
    text inside an MlflowException (requests' SSLError); the words are the same in both.
    """
    text = f"{type(exc).__name__}: {exc} {getattr(exc, 'reason', '')}".lower()
    return "ssl" in text and any(answer in text for answer in PLAIN_HTTP_ANSWERS)


def _transient(exc: BaseException) -> bool:
    if unreachable(exc) or plain_http_answer(exc):
        return False
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(
        s in text
        for s in (
            "database is locked",
            "database table is locked",
            "busy",
            "connection reset",
            "temporarily unavailable",
            "max retries exceeded",
        )
    )


def with_retry(fn: Callable[[], T], attempts: int = 8, base_delay: float = 0.1) -> T:
    """Call fn, retrying transient store errors (locked SQLite, a busy server) with backoff."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts - 1 or not _transient(exc):
                raise
            time.sleep(base_delay * (2**attempt) * (1 + random.random()))
    raise AssertionError("unreachable")


def search_all_runs(
    client: Any, experiment_ids: list[str], filter_string: str = "", page_size: int = 1000
) -> list[Any]:
    """Every run the search matches, page after page: one search_runs call stops at its
    max_results, and an experiment past that would lose runs from a comparison without a word."""
    found: list[Any] = []
    token = None
    while True:
        page = with_retry(
            lambda t=token: client.search_runs(
                experiment_ids, filter_string=filter_string, max_results=page_size, page_token=t
            )
        )
        found.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return found


def probe_writable(folder: Path) -> None:
    """Create folder if need be and write a file in it; raises the OSError that says why not."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".cvsweep-write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def check_writable(uri: str) -> None:
    """For a SQLite store: can its folder be written? Raises TrackingError saying what to do."""
    db = sqlite_path(uri)
    if db is not None:
        if db.is_dir():
            raise TrackingError(
                f"Tracking store {uri} names a folder, not a database file. Name a file in it, "
                f"e.g. tracking.uri=sqlite:///{db / 'mlflow.db'}, or set tracking.enabled=false."
            )
        blocker = nearest_existing(db.parent)
        if not blocker.is_dir():
            raise TrackingError(
                f"Tracking store {uri} cannot be made: {blocker} is a file, so no folder can "
                "be made there. Point tracking.uri at a store in a folder (sqlite:///path/to/"
                "mlflow.db), or set tracking.enabled=false (or tracking.required=false to train "
                "anyway and only warn)."
            )
        try:
            probe_writable(db.parent)
        except OSError as exc:
            raise TrackingError(
                f"Tracking store {uri} is not writable ({exc.strerror or exc}). Point "
                "tracking.uri at a writable folder, or set tracking.enabled=false (or "
                "tracking.required=false to train anyway and only warn)."
            ) from None


def client_for(uri: str) -> Any:
    """An MlflowClient for uri, after checking the store can be reached at all."""
    check_writable(uri)
    if uri.startswith(("http://", "https://")):
        probe_server(uri)
    return _cached_client(uri)


# Tables of an MLflow store; a database being created by another job has some of them already.
_MLFLOW_TABLES = frozenset({"alembic_version", "experiments", "runs", "metrics", "params", "tags"})


#: Names a store file may have (cvsweep's default is mlflow.db); a README.md is no store.
STORE_SUFFIXES = frozenset({".db", ".db3", ".sqlite", ".sqlite3"})
SQLITE_MAGIC = b"SQLite format 3\x00"


def refuse_foreign_database(db: Path) -> None:
    """MLflow would add its tables to any SQLite file it is given: refuse one that holds others.

    The file is only read (a read-only connection). An empty file, or one another job is
    turning into a store right now (some of MLflow's tables already there), is fine.
    """
    import sqlite3

    try:
        if db.stat().st_size == 0:
            return
        with db.open("rb") as fh:
            header = fh.read(len(SQLITE_MAGIC))
        if header != SQLITE_MAGIC and db.suffix.lower() not in STORE_SUFFIXES:
            # Most often a mistyped path naming a document: not "damaged", not to be moved.
            raise TrackingError(
                f"The tracking store {db} is not an SQLite file at all: check the path. Nothing "
                "in the file was changed. Point tracking.uri at a store (sqlite:///path/to/"
                "mlflow.db), or set tracking.enabled=false."
            )
        tables = sqlite_tables(db)
    except (OSError, sqlite3.Error):
        return  # missing, or not SQLite at all: MLflow's own error is reported as damaged
    if tables and not tables & _MLFLOW_TABLES:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise TrackingError(
            f"The tracking store {db} is an SQLite database of something else (tables: {shown}), "
            "not an MLflow store. Nothing in it was changed. Point tracking.uri at another file "
            "(sqlite:///path/to/mlflow.db), or set tracking.enabled=false."
        )


def sqlite_tables(db: Path) -> set[str]:
    """Table names, read without writing: a read-only connection cannot add or change a thing."""
    import sqlite3

    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        conn.close()
    return {name for (name,) in rows}


@functools.lru_cache(maxsize=8)
def _cached_client(uri: str) -> Any:
    """One client (and one database engine) per store per process: a sweep's jobs share it.

    A SQLite file is looked at once, here, before MLflow first opens it.
    """
    db = sqlite_path(uri)
    from mlflow import MlflowClient

    if db is None:
        try:
            return MlflowClient(tracking_uri=uri)
        except ModuleNotFoundError as exc:  # a database URI whose driver is not installed
            scheme = uri.split("://", 1)[0]
            raise TrackingError(
                f"A {scheme}:// tracking store needs the Python module {exc.name!r} (its database "
                f"driver), which is not installed here. Install the package that provides it "
                "into this environment, or use tracking.uri=sqlite:///path/to/mlflow.db."
            ) from None
    refuse_foreign_database(db)
    with store_creation_lock(db), _few_engine_retries():
        client = MlflowClient(tracking_uri=uri)
        with_retry(lambda: client.search_experiments(max_results=1))  # tables made or checked
    return client


@contextlib.contextmanager
def _few_engine_retries() -> Iterator[None]:
    """MLflow tries to create a store's database engine 10 times over 100 s, for a database
    server still starting. A store file SQLite cannot open now will not open later, and a run
    finishing (signals held) waited out those retries for every write: 3 tries, 0.4 s."""
    import mlflow.store.db.utils as db_utils

    before = getattr(db_utils, "MAX_RETRY_COUNT", None)
    if before is None:
        yield
        return
    db_utils.MAX_RETRY_COUNT = min(before, 3)
    try:
        yield
    finally:
        db_utils.MAX_RETRY_COUNT = before


def _lock_path(db: Path) -> str:
    return f"{db}.lock"


@contextlib.contextmanager
def store_creation_lock(db: Path) -> Iterator[None]:
    """One process at a time opens a SQLite store for the first time.

    Opening a store that does not exist yet creates MLflow's tables and runs its migrations;
    two commands started at once in a new folder would run them together and could leave the
    file half-migrated for good. `<db>.lock` beside the store serialises that first open (an
    existing store is only checked, in milliseconds). `cvsweep ui`/`server` hold it while
    MLflow's server makes a new store's tables.
    """
    import fcntl

    try:
        fh = open(_lock_path(db), "a")  # noqa: SIM115 (closed below)
    except OSError:
        yield  # an unwritable folder: the store's own open reports it
        return
    try:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()  # releases the lock


def store_being_created(db: Path) -> bool:
    """Is another command making this store's tables now, under store_creation_lock? Looked at
    without creating the lock file or keeping the lock."""
    import fcntl

    try:
        fh = open(_lock_path(db), "rb")  # noqa: SIM115 (closed below)
    except OSError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


TRAIN_ADVICE = (
    "Start it with `cvsweep server --port PORT`, fix tracking.uri, or set "
    "tracking.required=false to train anyway."
)


def as_warning(exc: TrackingError) -> str:
    """A store problem said as a warning, where tracking.required=false lets the run go on:
    the advice to set it, already set, is left out."""
    text = (
        str(exc)
        .replace(TRAIN_ADVICE, "Start it with `cvsweep server --port PORT` or fix tracking.uri.")
        .rstrip()
    )
    return text if text.endswith(".") else f"{text}."


# MLflow retries an HTTP call for about four minutes by default before it gives up. For a
# server that went away during a run, that is how long the job's end would wait per write (and
# a command like `cvsweep compare` would hang as long); this budget (6-9 s) still rides out a
# quick restart, with `with_retry` on top for answers that say busy. A user's own settings win.
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    # A server that hangs instead of refusing (stopped, swapping) answers nothing: MLflow's
    # own 120 s per attempt would hold a job's end for minutes before it is called lost.
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}


def limit_http_retries() -> None:
    """Apply HTTP_RETRY_DEFAULTS in this process unless the user set their own."""
    for key, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(key, value)


def probe_server(uri: str, timeout: float = 5.0, advice: str = TRAIN_ADVICE) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when the server is down."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            resp.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if uri.startswith("https://") and plain_http_answer(exc):
            raise TrackingError(_plain_http_problem(uri, reason)) from None
        raise TrackingError(
            f"Tracking server {uri} is not answering ({reason}). {advice}"
        ) from None


def _plain_http_problem(uri: str, reason: object) -> str:
    """An https:// URI for a server that speaks plain HTTP, as `cvsweep server` and `mlflow
    server` do: it is there and answering, so "not answering" would send the user looking
    for a server that runs."""
    plain = "http://" + uri[len("https://") :]
    return (
        f"Tracking server {uri} answered, but not over TLS: it speaks plain HTTP, not https "
        f"({reason}). Use {plain} instead."
    )


def ensure_experiment(client: Any, uri: str, name: str) -> str:
    """Create (or find) the experiment once, before jobs start, and return its id."""

    def get_or_create() -> str:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"Experiment {name!r} in {uri} is deleted, with its runs. "
                    f"`{restore_command(uri, exp.experiment_id)}` (or the MLflow UI) restores "
                    "it; or choose another tracking.experiment."
                )
            db = sqlite_path(uri)
            if db is not None and str(exp.artifact_location).startswith("mlflow-artifacts:"):
                # Named with the store: a bare `cvsweep server` serves ./mlflow.db, which in
                # another folder is a new, empty store. The worker serves train.py and rerun.
                raise TrackingError(
                    f"Experiment {name!r} in {uri} was created through a tracking server (its "
                    f"artifacts live at {exp.artifact_location}), so its runs can only be logged "
                    "through that server: start it with `cvsweep server --tracking-uri "
                    f"{shlex.quote(str(db))}` and log to the address it prints (tracking.uri="
                    "ADDRESS for train.py, --tracking-uri ADDRESS for cvsweep rerun), or choose "
                    "another tracking.experiment."
                )
            return exp.experiment_id
        db = sqlite_path(uri)
        location = (db.parent / "mlartifacts").resolve().as_uri() if db is not None else None
        try:
            return client.create_experiment(
                name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        except Exception as exc:  # another process created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise exc from None
            return exp.experiment_id

    try:
        return with_retry(get_or_create)
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(
            f"Tracking store {uri} cannot be used: {type(exc).__name__}: {exc}. Check that the "
            "server is running or the database path is right, or set tracking.required=false "
            "to train without tracking."
        ) from None


def orphan_note(run_id: str) -> str:
    """What a launch says of a run it found RUNNING with its process gone (`mark_orphans`)."""
    return f"note: run {run_id} was left RUNNING by a process that is gone: now KILLED"


def mark_orphans(client: Any, experiment_id: str) -> list[str]:
    """Runs left RUNNING by a process on this host that no longer exists become KILLED."""
    host = socket.gethostname()
    runs = with_retry(
        lambda: client.search_runs(
            [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
        )
    )
    killed = []
    for run in runs:
        tags = run.data.tags
        if tags.get("cvsweep.host") != host or not tags.get("cvsweep.pid", "").isdigit():
            continue
        if owner_alive(tags):
            continue
        # The list above may be stale: the run's process can have finished it and exited since,
        # and a FINISHED run must never become KILLED. Read once more, now that it is gone.
        now = with_retry(lambda r=run: client.get_run(r.info.run_id))
        pid = now.data.tags.get("cvsweep.pid", "")
        if now.info.status != "RUNNING" or not pid.isdigit() or owner_alive(now.data.tags):
            continue  # finished meanwhile, or taken over by a live process that resumes it
        with_retry(lambda r=run: client.set_tag(r.info.run_id, "cvsweep.orphaned", "true"))
        with_retry(lambda r=run: client.set_terminated(r.info.run_id, "KILLED"))
        killed.append(run.info.run_id)
    return killed


INCOMPLETE_TAG = "cvsweep.incomplete"  # on a FINISHED run whose store missed some writes
CLAIM_TAG = "cvsweep.claim"  # the token of the launch that took a run over to resume it

# A RUNNING run of another host that wrote nothing for this long is taken to be abandoned (its
# machine lost); one that wrote more recently may still be training there and is left alone.
# A live run writes at every log point and checkpoint: seconds to a minute apart for MNIST.
STALE_AFTER_S = 900.0


def process_token(pid: int) -> str:
    """What tells this process apart from a later one given the same pid: the boot and the
    process's start time (Linux /proc; empty elsewhere). A container restarted on the same
    host name often gives its new trainer the dead one's pid."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""
    return f"{boot}:{start}"


OWNER_KEYS = ("cvsweep.host", "cvsweep.pid", "cvsweep.proc", "cvsweep.claimed_at")


def owner_tags(pid: int) -> dict[str, str]:
    """The tags that say which process trains a run, and since when it holds it."""
    values = (socket.gethostname(), str(pid), process_token(pid), f"{time.time():.3f}")
    return dict(zip(OWNER_KEYS, values, strict=True))


def owner_alive(tags: dict[str, str]) -> bool:
    """Is the process a run's tags name (on this host) still the one that wrote them?"""
    pid = tags.get("cvsweep.pid", "")
    if not pid.isdigit() or not _pid_alive(int(pid)):
        return False
    token, now = tags.get("cvsweep.proc"), process_token(int(pid))
    return not token or not now or token == now  # unreadable (hidepid): taken as the owner


def live_owner(client: Any, run: Any) -> str | None:
    """Who may still be training a RUNNING run, or None when nobody can be.

    A later launch of the same config must not take over a run that a live process is still
    writing (two writers, one history). On this host the owner process says it
    (`mark_orphans` has marked the dead ones KILLED already); another host's process cannot be
    asked, so its run counts as live until it has written nothing for STALE_AFTER_S: no
    metric point, and no claim (`cvsweep.claimed_at`, written when a process takes the run).
    That last rule reads another host's clock.
    """
    tags = run.data.tags
    host, pid = tags.get("cvsweep.host", "?"), tags.get("cvsweep.pid", "?")
    if host == socket.gethostname():
        return f"pid {pid} on this host" if owner_alive(tags) else None
    last_ms = int(run.info.start_time or 0)
    with contextlib.suppress(ValueError):
        last_ms = max(last_ms, int(float(tags.get("cvsweep.claimed_at", "0")) * 1000))
    for key in run.data.metrics:
        history = with_retry(lambda k=key: client.get_metric_history(run.info.run_id, k))
        last_ms = max([last_ms, *(int(m.timestamp) for m in history)])
    idle_s = time.time() - last_ms / 1000
    if idle_s >= STALE_AFTER_S:
        return None
    return f"pid {pid} on host {host}, last write {idle_s:.0f} s ago"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists -> dotted keys, the MLflow params contract (model.layers.0.out)."""
    out: dict[str, Any] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(node, list | tuple) and any(isinstance(v, dict | list) for v in node):
        for i, value in enumerate(node):
            out.update(flatten(value, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = node
    return out


class MlflowTracker:
    """One MLflow run's writes, made by the tracking process (`store_worker`).

    Metrics are buffered and written in batches: few store round-trips.
    """

    FLUSH_POINTS = 200
    FLUSH_SECONDS = 5.0

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self._buffer: list[Any] = []
        self._last_flush = time.monotonic()

    def add_metrics(self, points: list[tuple[str, float, int, int]]) -> None:
        """Buffer (key, value, timestamp ms, step) points; written in batches."""
        from mlflow.entities import Metric

        self._buffer.extend(Metric(k, float(v), int(t), int(s)) for k, v, t, s in points)
        if (
            len(self._buffer) >= self.FLUSH_POINTS
            or time.monotonic() - self._last_flush > self.FLUSH_SECONDS
        ):
            self.flush()

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    def drop_pending(self) -> None:
        """Forget points that could not be written, so later flushes do not retry them."""
        self._buffer.clear()

    def flush(self) -> None:
        while self._buffer:
            chunk, self._buffer = self._buffer[:1000], self._buffer[1000:]
            with_retry(lambda c=chunk: self.client.log_batch(self.run_id, metrics=c))
        self._last_flush = time.monotonic()

    def log_params(self, params: dict[str, Any]) -> list[str]:
        """Log params; returns the keys whose values were too long (they live in config/)."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        items, skipped = [], []
        for key, value in params.items():
            text = "null" if value is None else str(value)
            if len(text) > MAX_PARAM_VAL_LENGTH:
                skipped.append(key)
                continue
            items.append(Param(key, text))
        for i in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            chunk = items[i : i + MAX_PARAMS_TAGS_PER_BATCH]
            with_retry(lambda c=chunk: self.client.log_batch(self.run_id, params=c))
        return skipped

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag
        from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

        items = [RunTag(k, str(v)[:MAX_TAG_VAL_LENGTH]) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            chunk = items[i : i + 100]
            with_retry(lambda c=chunk: self.client.log_batch(self.run_id, tags=c))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        with_retry(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        with_retry(lambda: self.client.log_artifacts(self.run_id, str(folder), artifact_path))

    def finish(self, status: str) -> None:
        """Flush, then set the status even when the flush failed."""
        try:
            self.flush()
        finally:
            with_retry(lambda: self.client.set_terminated(self.run_id, status))
