"""How an error message names the store option the user gave: a flag or an argument.

The same store checks serve the commands (`--tracking-uri URI`) and Python's `load_model`
(`tracking_uri=URI`). Advice must name what the reader typed: a notebook user told to "pass
--tracking-uri" has no flag to pass. The commands are the default; `load_model` runs its work
inside `python_api()`.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator
from contextvars import ContextVar

FLAG = "--tracking-uri"
ARGUMENT = "tracking_uri"

_named: ContextVar[str] = ContextVar("cvsweep_store_option", default=FLAG)


def option() -> str:
    """The option's name as the user wrote it: `--tracking-uri` or `tracking_uri`."""
    return _named.get()


def given(value: str) -> str:
    """The option with a value, ready to copy: `--tracking-uri URI` or `tracking_uri='URI'`."""
    if option() == ARGUMENT:
        return f"{ARGUMENT}={value!r}"
    return f"{FLAG} {shlex.quote(value)}"


def example(value: str) -> str:
    """The option with a placeholder value (no quoting of its metacharacters)."""
    return f"{ARGUMENT}='{value}'" if option() == ARGUMENT else f"{FLAG} {value}"


@contextlib.contextmanager
def python_api() -> Iterator[None]:
    """Messages raised inside name `tracking_uri`, the argument of the Python functions."""
    token = _named.set(ARGUMENT)
    try:
        yield
    finally:
        _named.reset(token)
