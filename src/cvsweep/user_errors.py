"""The errors a run reports as the user's to fix: one paragraph, no traceback, exit code 2.

Kept apart from the job module so that a command line can be refused before torch loads.
"""

from __future__ import annotations

import sys

from .config import ConfigError
from .data import DataError
from .tracking import TrackingError

ERRORS_FOR_USER = (ConfigError, DataError, TrackingError)


def print_user_error(exc: BaseException, prefix: str = "") -> None:
    """One paragraph for the user, no traceback: these errors are the user's to fix. A job of
    a parallel sweep starts it with its number, as its other console lines.

    Written in one call, newline included: print() writes the newline separately, and another
    job's error, unbuffered, could land between the two (two errors on one line)."""
    sys.stderr.write(f"{prefix}error: {exc}\n")
    sys.stderr.flush()


def one_line(text: str, limit: int = 600) -> str:
    """A recorded error or reason inside a sentence of ours: one line, no final stop, capped."""
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 3] + "..."
