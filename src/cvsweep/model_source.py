"""What `cvsweep evaluate` and `load_model` accept as a model's source, told apart without torch.

A source that is neither an existing path nor an MLflow run id is a mistake the user fixes by
retyping it; checking it here, before torch's two seconds of imports, answers in a blink.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

RUN_ID = re.compile(r"^[0-9a-f]{32}$|^[0-9a-f]{40}$")
MODEL_NAME = "model.pth"
CHECKPOINT_NAME = "checkpoint.pt"  # here, not in checkpoint.py: that module imports torch
# Files of a job folder that hold no weights (its config, result, log, shape report).
JOB_RECORDS = (".yaml", ".yml", ".json", ".log", ".md", ".csv", ".png", ".txt")


def _looks_like_a_path(source: str) -> bool:
    return (
        os.sep in source
        or "/" in source
        or source.endswith((".pth", ".pt"))
        or source in (".", "..")
    )


class SourceError(ValueError):
    """A model source that is neither an existing path nor a run id."""


def resolve_source(source: str | Path) -> Path | str:
    """The existing file or folder `source` names, else the run id it is; else SourceError.

    One answer for both callers, so `evaluate` (which checks ahead of torch) and `load_model`
    cannot tell a source apart differently.
    """
    path = Path(source)
    if path.is_file() and path.suffix.lower() in JOB_RECORDS:
        folder = path.parent.parent if path.parent.name == ".hydra" else path.parent
        raise SourceError(
            f"{source} is one of a job's records, not a model: give the job folder ({folder}) "
            f"or the {MODEL_NAME} in it."
        )
    if path.exists():
        return path
    if RUN_ID.match(str(source).lower()):  # MLflow's ids are lowercase; a copy may not be
        return str(source).lower()
    if isinstance(source, Path) or _looks_like_a_path(str(source)):
        where = "" if path.is_absolute() else f" (looked for in {Path.cwd()})"
        raise SourceError(
            f"no such file or folder: {source}{where}. Give a job folder, the {MODEL_NAME} in "
            "one, or an MLflow run id (32 hex digits, printed as `mlflow run:` at the end of a "
            "job)."
        )
    raise SourceError(
        f"{str(source)!r} is neither a job folder (or a model.pth in one) nor an MLflow run id "
        "(32 hex digits, printed as `mlflow run:` at the end of a job)."
    )


def source_problem(source: str, tracking_uri: str | None) -> str | None:
    """Why `cvsweep evaluate` cannot load from `source` (no such path, not a run id, a run id
    whose store is missing), found without torch or MLflow; None where it may."""
    try:
        found = resolve_source(source)
    except SourceError as exc:
        return str(exc)
    return None if isinstance(found, Path) else _run_store_problem(found, tracking_uri)


def _run_store_problem(run_id: str, tracking_uri: str | None) -> str | None:
    """Why the store a run id is looked up in cannot hold it (missing, not a store, a malformed
    URI), said before torch loads; None where it may. `load_model` checks it again, and asks."""
    from .job_folder import local_store_hint
    from .store_errors import StoreError, existing_store

    try:
        existing_store(tracking_uri, "" if tracking_uri else local_store_hint(run_id))
    except StoreError as exc:
        return str(exc)
    return None
