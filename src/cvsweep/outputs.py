"""Where `compare --out` and `report --out` write: checked before the store is read.

A path that cannot be written is the user's to fix, so it is named in one paragraph (exit 2)
before minutes of reading runs, not found afterwards as a traceback.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputPathError(ValueError):
    """An --out path the command cannot write."""


def nearest_existing(path: Path) -> Path:
    """path, or its nearest parent that exists: where a folder for it would be made."""
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path(".")


def check_folder(path: Path, flag: str = "--out") -> Path:
    """A folder that exists or can be made, and can be written."""
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{flag} {path} is a file, not a folder: name a folder to write to.")
    return _check_writable(path, flag)


def check_file(path: Path, flag: str = "--out") -> Path:
    """A file that can be (over)written in a folder that exists or can be made."""
    if path.is_dir():
        raise OutputPathError(
            f"{flag} {path} is a folder: name the file to write, e.g. {path / 'results.md'}."
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{flag} {path} cannot be overwritten: it is read-only.")
    return _check_writable(path.parent, flag, named=path)


def _check_writable(folder: Path, flag: str, named: Path | None = None) -> Path:
    base = nearest_existing(folder)
    shown = named or folder
    if not base.is_dir():
        raise OutputPathError(
            f"{flag} {shown} cannot be written: {base} is a file, so no folder can be made there."
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"{flag} {shown} cannot be written: no permission to write in {base}."
        )
    refused = _refuses_new_files(base)
    if refused is not None:
        raise OutputPathError(
            f"{flag} {shown} cannot be written: {base} takes no new files or folders "
            f"({refused}). Name a path on an ordinary, writable disk."
        )
    return named or folder


def _refuses_new_files(folder: Path) -> str | None:
    """Why a new file cannot be made in folder, or None: permissions do not bind root, and
    /proc, /sys or a read-only mount refuse what os.access allows, so one is made and removed."""
    try:
        handle, name = tempfile.mkstemp(prefix=".cvsweep-write-check-", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(handle)
    os.unlink(name)
    return None
