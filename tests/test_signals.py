"""HeldSignals: what every Ctrl-C and SIGTERM hold in cvsweep rests on."""

from __future__ import annotations

import os
import signal

import pytest

from cvsweep.signals import HeldSignals


def _press(signum: int = signal.SIGINT) -> None:
    os.kill(os.getpid(), signum)  # delivered to the main thread before the next bytecode


def test_a_held_signal_waits_and_is_delivered_as_the_handler_set_back_would_act():
    seen: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, _frame: seen.append(signum))
    try:
        held = HeldSignals(signal.SIGINT, signal.SIGTERM).start()
        _press(signal.SIGTERM)
        _press(signal.SIGINT)
        _press(signal.SIGTERM)
        assert seen == [] and held.first == signal.SIGTERM
        held.release()
        assert held.arrived == [signal.SIGTERM, signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):  # SIGTERM's handler first, then Python's Ctrl-C
            held.deliver()
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_second_ctrl_c_stops_at_once_only_where_asked():
    with HeldSignals(second_ctrl_c_stops=True) as held:
        _press()
        with pytest.raises(KeyboardInterrupt):
            _press()
    assert held.arrived == [signal.SIGINT]
    with HeldSignals() as patient:
        _press()
        _press()
    assert patient.pending == [signal.SIGINT, signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_signal_stays_ignored_and_nothing_is_delivered():
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with HeldSignals(signal.SIGTERM) as held:
            _press(signal.SIGTERM)
        held.deliver()  # SIG_IGN was the handler: nothing happens
        assert held.arrived == [] and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
