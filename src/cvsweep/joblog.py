"""A job folder's `train.log` holds what the job printed.

Hydra opens `<job folder>/train.log` for Python logging, but cvsweep reports on the console, so
the file stayed empty. While a job runs, its stdout is copied into that file through Hydra's own
handler (one file position, so a library's logged warning lands in order, never over a line).
Progress bars (stderr) are left out; a job's one-paragraph error is written there too.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def job_log_handler(out_dir: Path) -> logging.FileHandler | None:
    """Hydra's file handler for this job folder (None without one: logging off, or no Hydra)."""
    folder = Path(out_dir).resolve()
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, logging.FileHandler):
            continue
        if Path(handler.baseFilename).resolve().parent == folder:  # both through any symlink
            return handler
    return None


class _CopyToLog:
    """stdout that also writes each piece to the log file; everything else is stdout's."""

    def __init__(self, out: Any, handler: logging.FileHandler) -> None:
        self._out = out
        self._handler = handler

    def write(self, text: str) -> int:
        written = self._out.write(text)
        self.log(text)
        return written

    def log(self, text: str) -> None:
        handler = self._handler
        handler.acquire()
        try:
            if handler.stream is not None:
                handler.stream.write(text)
                handler.stream.flush()
        except (OSError, ValueError):  # a full disk or a closed file must not stop training
            pass
        finally:
            handler.release()

    def flush(self) -> None:
        self._out.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)


@contextlib.contextmanager
def console_in_job_log(out_dir: Path) -> Iterator[Callable[[str], None]]:
    """Copy stdout into the job's train.log while the block runs.

    Yields a function that writes one line to the log alone (for what goes to stderr).
    """
    handler = job_log_handler(out_dir)
    if handler is None or sys.stdout is None:  # None: stdout closed (`>&-`), nothing to copy
        yield lambda line: None
        return
    saved = sys.stdout
    copy = _CopyToLog(saved, handler)
    sys.stdout = copy
    try:
        yield lambda line: copy.log(line.rstrip("\n") + "\n")
    finally:
        if sys.stdout is copy:
            sys.stdout = saved
