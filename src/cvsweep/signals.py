"""Ctrl-C and SIGTERM held while a step that must not be cut runs, then acted on.

Python acts on a signal between any two bytecodes: inside a C extension's import (torch's can
abort the process, pydantic's model building turns the KeyboardInterrupt into a SchemaError),
between an optimizer step and the data order it belongs to, or between a run marked FINISHED and
its result file. Where that would leave things half done, the signal is recorded instead, and the
caller acts on it once the step is complete. Importing this module costs nothing: `train.py`
holds Ctrl-C with it before torch loads.
"""

from __future__ import annotations

import os
import signal
import threading
from types import TracebackType
from typing import Any


class Terminated(SystemExit):
    """SIGTERM outside training, as `train.py` raises it: the exit of an error (a sweep is
    still recorded as stopped), and told apart from one where a job sets itself up, so its run
    is KILLED like one that Ctrl-C stopped there, not FAILED without a reason."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(128 + signum)


class HeldSignals:
    """Records the given signals instead of acting on them, from start() to release().

    With second_ctrl_c_stops, a second Ctrl-C raises KeyboardInterrupt at once: someone who
    presses twice wants out now, whatever is half done. Where the process's handlers cannot be
    set (a thread other than the main one), nothing is held and nothing is recorded.
    """

    def __init__(self, *signums: int, second_ctrl_c_stops: bool = False) -> None:
        self.signums = signums or (signal.SIGINT,)
        self.second_ctrl_c_stops = second_ctrl_c_stops
        self.pending: list[int] = []
        self._previous: dict[int, Any] = {}
        self._restored: dict[int, Any] = {}

    def _record(self, signum: int, _frame: Any) -> None:
        if self.second_ctrl_c_stops and signum == signal.SIGINT and signum in self.pending:
            raise KeyboardInterrupt
        self.pending.append(signum)

    def start(self) -> HeldSignals:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.signums:
            previous = signal.signal(signum, self._record)
            # None: a handler set outside Python, which cannot be set back; the default is.
            self._previous[signum] = signal.SIG_DFL if previous is None else previous
        return self

    def release(self) -> None:
        """Set back the handlers that were there at start(); what arrived stays in `arrived`."""
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        self._restored.update(previous)

    @property
    def arrived(self) -> list[int]:
        """Each signal that arrived while held, once, in the order of its first arrival."""
        return list(dict.fromkeys(self.pending))

    @property
    def first(self) -> int | None:
        return self.pending[0] if self.pending else None

    def deliver(self) -> None:
        """After release(): act on what arrived as the handlers set back would have.

        Only signals that were held are acted on: where nothing could be held (another thread),
        nothing is delivered either.
        """
        for signum in self.arrived:
            handler = self._restored.get(signum)
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL and signum == signal.SIGINT:
                raise KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)
        self.pending = []

    def __enter__(self) -> HeldSignals:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def import_held(*names: str) -> None:
    """Import names with Ctrl-C held, then act on a press made meanwhile.

    A KeyboardInterrupt raised inside an import is not always one when it arrives: pydantic,
    building a model class while MLflow loads, turned it into a SchemaError traceback (exit 1),
    and torch's import can abort. Held, the press raises KeyboardInterrupt right after.
    """
    import importlib

    with HeldSignals() as held:
        for name in names:
            importlib.import_module(name)
    if held.arrived:
        raise KeyboardInterrupt


def interrupt_behind(exc: BaseException) -> BaseException | None:
    """The Ctrl-C or SIGTERM that an exception was raised in the wake of, if any.

    Pressed while Hydra composes a job's config, a KeyboardInterrupt breaks OmegaConf's
    clean-up half way: an AttributeError follows from its `finally`, and Hydra reports that as
    a ConfigCompositionException. The interrupt is still there in the exception's context, and
    it, not the config or the launcher, is what stopped the command.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt | Terminated):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
