"""The small interface the engine logs through, and the tracker that logs nowhere.

The engine knows nothing of MLflow: it gets an object with these methods. That keeps it fast to
test and lets `tracking.enabled=false` run with no store at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Tracker(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...


class NullTracker:
    """Accepts everything and keeps nothing."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        return None

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        return None

    def set_tags(self, tags: dict[str, str]) -> None:
        return None
