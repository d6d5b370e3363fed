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
    """stdout that also writes each piece to the log file; everything else is stdout's.

    With a prefix (jobs of a parallel sweep sharing one console), each console line is written
    whole, in one call, starting with the prefix: print() writes a line and its newline
    separately, and unbuffered (PYTHONUNBUFFERED=1) another job's line could land between the
    two. The log file, the job's own, gets the lines as printed.
    """

    def __init__(self, out: Any, handler: logging.FileHandler | None, prefix: str = "") -> None:
        self._out = out
        self._handler = handler
        self._prefix = prefix
        self._pending = ""  # the start of a console line whose newline has not come yet

    def write(self, text: str) -> int:
        self.log(text)
        if not self._prefix:
            return self._out.write(text)
        *lines, self._pending = (self._pending + text).split("\n")
        if lines:
            self._out.write("".join(self._prefixed(line) for line in lines))
            self._out.flush()
        return len(text)

    def _prefixed(self, line: str) -> str:
        return f"{self._prefix}{line}\n" if line else f"{self._prefix.rstrip()}\n"

    def end(self) -> None:
        """A last line printed without its newline is written all the same."""
        if self._pending:
            self._out.write(self._prefixed(self._pending))
            self._pending = ""
        self._out.flush()

    def log(self, text: str) -> None:
        handler = self._handler
        if handler is None:
            return
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
def console_in_job_log(out_dir: Path, prefix: str = "") -> Iterator[Callable[[str], None]]:
    """Copy stdout into the job's train.log while the block runs; with a prefix, console lines
    start with it (see _CopyToLog).

    Yields a function that writes one line to the log alone (for what goes to stderr).
    """
    handler = job_log_handler(out_dir)
    if (handler is None and not prefix) or sys.stdout is None:  # None: stdout closed (`>&-`)
        yield lambda line: None
        return
    saved = sys.stdout
    copy = _CopyToLog(saved, handler, prefix)
    sys.stdout = copy
    try:
        yield lambda line: copy.log(line.rstrip("\n") + "\n")
    finally:
        if sys.stdout is copy:
            sys.stdout = saved
        copy.end()
