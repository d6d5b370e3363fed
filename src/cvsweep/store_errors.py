"""Opening an existing MLflow store for `cvsweep compare`, `rerun` and `report`.

MLflow turns whatever SQLite path it is given into a store: it creates a missing file, adds its
tables to a foreign database, and answers a damaged file with a long SQLAlchemy traceback. These
commands look at runs a user already has, so the file is checked read-only first, nothing is
created or changed, and every problem becomes one paragraph that names the file and says what to
do, with exit code 2 like the commands' other user errors.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .store_option import example, given, option
from .tracking import (
    SQLITE_MAGIC,
    STORE_SCHEMES,
    STORE_SUFFIXES,
    TrackingError,
    limit_http_retries,
    probe_server,
    resolve_uri,
    sqlite_path,
    sqlite_tables,
    store_being_created,
    with_retry,
)

EXIT_USER_ERROR = 2

MLFLOW_TABLES = frozenset({"experiments", "runs"})
BROKEN_DATABASE = (
    "file is not a database",
    "database disk image is malformed",
    "file is encrypted",
    "no such table",
)


BUSY_DATABASE = ("database is locked", "database table is locked", "database is busy")


def _server_advice() -> str:
    """What to do about a tracking server that does not answer."""
    return (
        "Start it (`cvsweep server --port PORT` in the folder that holds its store), or point "
        f"{option()} at the store your runs were logged to (sqlite:///path/to/mlflow.db)."
    )


class StoreError(RuntimeError):
    """A store that cannot be read; the message names it and says what to do."""


def quiet_downloads() -> None:
    """No MLflow download progress bars in the middle of a command's output (unless asked)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def store_uri_or_path(text: str) -> str:
    """A bare path names an SQLite store file, as for `report`: the same for every command and
    for `load_model`.

    A store URI missing its `//` (`file:./mlruns`, `sqlite:mlflow.db`) is left as given, to be
    named as a malformed URI, not read as a path with a folder called `file:.` in it.
    """
    scheme = text.split(":", 1)[0].split("+", 1)[0].lower() if ":" in text else ""
    if text and "://" not in text and scheme not in STORE_SCHEMES:
        return f"sqlite:///{Path(text).resolve()}"
    return text


def _stores(served: bool) -> str:
    """The stores --tracking-uri may name: `cvsweep ui` and `server` serve a file, and refuse
    a server's address, so they are not told to pass one."""
    return (
        "sqlite:///path/to/mlflow.db"
        if served
        else "sqlite:///path/to/mlflow.db or http://HOST:PORT"
    )


def _what_to_do(db: Path, served: bool = False) -> str:
    path = shlex.quote(str(db))
    return (
        "Nothing in it was changed. If it should hold your runs, restore it from a backup; "
        f"otherwise move it aside (mv {path} {path}.broken) and run training again to start "
        f"a new store, or point {option()} at the store your runs were logged to "
        f"({_stores(served)})."
    )


def _not_a_store(db: Path, problem: str, served: bool = False) -> StoreError:
    return StoreError(f"The tracking store {db} {problem}. {_what_to_do(db, served)}")


def _named_like_a_store(db: Path) -> bool:
    """mlflow.db, x.db, x.sqlite: a file a store may have been (its first page overwritten)."""
    return db.suffix.lower() in STORE_SUFFIXES


def _not_sqlite(db: Path, served: bool = False) -> StoreError:
    """A file without SQLite's header is most often a mistyped path naming someone's document
    (README.md), which must not be moved aside; only a store-like name gets that advice."""
    if_store = (
        f" If it is the store your runs were logged to, its start was overwritten: restore it "
        f"from a backup, or move it aside (mv {shlex.quote(str(db))} "
        f"{shlex.quote(str(db) + '.broken')}) and run training again to start a new store."
        if _named_like_a_store(db)
        else ""
    )
    return StoreError(
        f"The tracking store {db} is not an MLflow database: it is not even an SQLite file. "
        f"Check the path; nothing in the file was changed. Point {option()} at the store "
        f"your runs were logged to ({_stores(served)}).{if_store}"
    )


def _expected_tables() -> set[str]:
    """The tables this MLflow needs; MLflow would create any that are missing, so ask first."""
    from .signals import import_held

    try:
        # It defines the tables. MLflow loads here, with a Ctrl-C meanwhile held (import_held).
        import_held("mlflow.store.tracking.sqlalchemy_store")
        from mlflow.store.db.base_sql_model import Base
    except ImportError:
        return set(MLFLOW_TABLES)
    return set(Base.metadata.tables) or set(MLFLOW_TABLES)


def check_sqlite_store(db: Path, missing_hint: str = "", *, served: bool = False) -> None:
    """Raise StoreError unless db is an MLflow SQLite store this process can read; served: for
    `cvsweep ui`/`server`, whose --tracking-uri takes a store file only."""
    if not db.exists():
        raise StoreError(
            f"There is no MLflow store at {db}: the file does not exist (and was not created). "
            + (
                missing_hint
                or "Run from the folder you trained in, or pass "
                f"{example('sqlite:///path/to/mlflow.db')} (or http://HOST:PORT for a tracking "
                "server)."
            )
        )
    if not db.is_file():
        # Most often the folder the store is in: the folder is the user's, never to move aside.
        inside = db / "mlflow.db"
        where = (
            f"the store in it is {inside}: pass {given(str(inside))}"
            if inside.is_file()
            else f"point {option()} at the store file your runs were logged to ({_stores(served)})"
        )
        raise StoreError(
            f"The tracking store {db} is a folder, not an MLflow database file; {where}."
        )
    try:
        with db.open("rb") as fh:
            header = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(
            f"The tracking store {db} cannot be read ({exc.strerror or exc}). Check the file's "
            f"permissions, or point {option()} at a store you can read."
        ) from None
    if not header:
        raise _not_a_store(db, "is an empty file, not an MLflow database", served)
    if header != SQLITE_MAGIC:
        raise _not_sqlite(db, served)
    try:
        tables = sqlite_tables(db)
    except sqlite3.Error as exc:
        if busy_store(exc):
            raise StoreError(
                f"The tracking store {db} is busy: another process holds a lock on it (SQLite: "
                f"{exc}) and kept it longer than this command waits. Nothing in it was changed; "
                "run the command again once that process is done."
            ) from None
        raise _not_a_store(db, f"is damaged and cannot be read (SQLite: {exc})", served) from None
    missing = sorted(_expected_tables() - tables)
    if missing and store_being_created(db):
        raise StoreError(
            f"The tracking store {db} is being created by another command (it holds {db}.lock "
            "while it makes MLflow's tables). Nothing in it was changed; run this command again "
            "in a few seconds."
        )
    if not MLFLOW_TABLES.issubset(tables):
        raise _not_a_store(
            db, "is an SQLite database but not an MLflow store (no runs table)", served
        )
    if missing:
        raise StoreError(
            f"The tracking store {db} was made by another MLflow version (it lacks the tables "
            f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); this command "
            "does not change a store. Back the file up, then upgrade it with `mlflow db upgrade "
            f"sqlite:///{db}`, or point {option()} at another store."
        )


def busy_store(exc: BaseException) -> bool:
    """Did a store call fail only because another process held the database's lock?"""
    text = str(exc).lower()
    return any(s in text for s in BUSY_DATABASE)


def broken_store(exc: BaseException) -> bool:
    """Did a store call fail because the database itself is damaged, not because of a run?"""
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(s in text for s in BROKEN_DATABASE)


def from_store(exc: BaseException) -> bool:
    """Did exc come from reading the store (MLflow, SQLAlchemy, SQLite), not from our own files?"""
    module = type(exc).__module__
    return isinstance(exc, sqlite3.Error) or module.startswith(("mlflow", "sqlalchemy"))


def _clipped(text: str, limit: int = 300) -> str:
    """text cut at a word before limit, with "...": a cut mid-word (or mid-URL) reads as a typo."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(".,;:") + " ..."


def store_failure(uri: str, exc: BaseException) -> StoreError:
    """A failure met while reading the store, as the one paragraph the user sees."""
    db = sqlite_path(uri)
    reason = _clipped(str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__
    if db is not None and broken_store(exc):
        return _not_a_store(db, f"is damaged and cannot be read ({reason})")
    return StoreError(
        f"Cannot read the tracking store {uri} ({type(exc).__name__}: {reason}). Check that it "
        f"is the store your runs were logged to, or point {option()} at another one."
    )


def existing_store(uri: str | None, missing_hint: str = "") -> str:
    """uri resolved, where it is well formed and not an SQLite file that is missing or not a
    store; a server is not asked here."""
    try:
        resolved = resolve_uri(uri, name=option())
    except TrackingError as exc:
        raise StoreError(str(exc)) from None
    db = sqlite_path(resolved)
    if db is not None:
        check_sqlite_store(db, missing_hint)
    return resolved


def open_client(uri: str | None, missing_hint: str = "") -> tuple[Any, str]:
    """(MlflowClient, resolved uri) for a store that exists and can be read; never creates one.

    MLflow is imported only once the store is known to exist: a mistyped store is named
    without its second of imports."""
    resolved = existing_store(uri, missing_hint)
    if resolved.startswith(("http://", "https://")):
        limit_http_retries()  # a server lost half-way fails the command in seconds too
        try:
            probe_server(resolved, advice=_server_advice())
        except TrackingError as exc:
            raise StoreError(str(exc)) from None
    from .signals import import_held

    import_held("mlflow")  # a Ctrl-C while it loads waits until it is in (see import_held)
    from .served_artifacts import store_client

    try:
        client = store_client(resolved)
        with_retry(lambda: client.search_experiments(max_results=1))
    except Exception as exc:
        raise store_failure(resolved, exc) from None
    return client, resolved


def store_command(
    open_store: Callable[[], tuple[Any, str]],
    work: Callable[[Any, str], int],
    user_errors: tuple[type[BaseException], ...] = (),
) -> int:
    """Run a command's work against a store it opened; exit 2 with one paragraph for what the
    user must fix: a store that cannot be read (now or half-way through), or user_errors."""
    quiet_downloads()
    try:
        client, uri = open_store()
    except (StoreError, *user_errors) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        return work(client, uri)
    except user_errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:
        if not from_store(exc):
            raise
        print(f"error: {store_failure(uri, exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
