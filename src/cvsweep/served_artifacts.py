"""Reading the store file of runs that were logged through `cvsweep server`.

A server records each run's artifacts as `mlflow-artifacts:/<experiment>/<run>/artifacts`, an
address only a tracking server resolves: MLflow refuses it when the tracking URI is the store
file itself. `cvsweep server` keeps those artifacts in `mlartifacts/` beside the file
(`server.artifacts_destination`), so `compare`, `evaluate`, `rerun` and `load_model` read them
there, and the server need not be running to look at what it logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .store_errors import StoreError
from .store_option import example

SERVED_SCHEME = "mlflow-artifacts:"


class ServedArtifactsMissing(StoreError):
    """A served run's artifacts are not beside the store file (the server kept them elsewhere)."""


class StoreFileClient:
    """An MlflowClient for an SQLite store whose served runs' artifacts are read from disk.

    Runs logged straight to the file (a `file://` artifact location) go to MLflow's client as
    they are; only the two calls that reach artifacts look at the run's location first.
    """

    def __init__(self, client: Any, db: Path) -> None:
        self._client = client
        self._db = db
        self._root = (db.parent / "mlartifacts").resolve()
        self._locations: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[Any]:
        repo = self._served_repo(run_id)
        if repo is None:
            return self._client.list_artifacts(run_id, path)
        return repo.list_artifacts(path)

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        repo = self._served_repo(run_id)
        if repo is None:
            return self._client.download_artifacts(run_id, path, dst_path)
        return repo.download_artifacts(path, dst_path)

    def _served_repo(self, run_id: str) -> Any | None:
        """The run's artifacts on disk where a server logged them, else None (MLflow's way)."""
        location = self._locations.get(run_id)
        if location is None:
            location = str(self._client.get_run(run_id).info.artifact_uri or "")
            self._locations[run_id] = location
        if not location.startswith(SERVED_SCHEME):
            return None
        folder = self._root / urlparse(location).path.lstrip("/")
        if not folder.is_dir():
            raise ServedArtifactsMissing(
                f"Run {run_id} was logged through a tracking server, which keeps its artifacts "
                f"({location}); they are not in {self._root}, where `cvsweep server` keeps them "
                f"for the store {self._db}. Start the server that logged it and pass "
                f"{example('http://HOST:PORT')}, or copy that server's artifacts folder to "
                f"{self._root}."
            )
        from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

        return LocalArtifactRepository(folder.as_uri())


def store_client(uri: str) -> Any:
    """MLflow's client for uri; for a store file, one that also reads served runs' artifacts."""
    from mlflow import MlflowClient

    from .tracking import sqlite_path

    client = MlflowClient(tracking_uri=uri)
    db = sqlite_path(uri)
    return client if db is None else StoreFileClient(client, db)
