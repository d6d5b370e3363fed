"""HeldSignals: what every Ctrl-C and SIGTERM hold in cvsweep rests on."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from cvsweep.signals import HeldSignals, Terminated, interrupt_behind


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


def _composition_cut_by(interrupt: BaseException) -> None:
    """What Hydra raised when Ctrl-C landed in OmegaConf's clean-up while it composed a job:
    the interrupt, an AttributeError from a `finally`, and Hydra's exception around both."""
    from hydra.errors import ConfigCompositionException

    try:
        try:
            raise interrupt
        finally:
            getattr(None, "flags")  # noqa: B009  (the half-reset node OmegaConf meets)
    except AttributeError as exc:
        raise ConfigCompositionException() from exc


class _Launcher:
    def __init__(self, fail: Any) -> None:
        self.fail = fail

    def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
        self.fail()


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), Terminated()])
def test_an_interrupt_behind_a_composition_error_stops_the_sweep_as_an_interrupt(
    interrupt: BaseException, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not "the launcher failed: ConfigCompositionException" (exit 1): the Ctrl-C (or SIGTERM)
    itself goes on, to be said and recorded as the stop it is."""
    from hydra_plugins.cvsweep_sweeper.cvsweep_sweeper import _NamedLauncherErrors

    launcher = _NamedLauncherErrors(_Launcher(lambda: _composition_cut_by(interrupt)), "basic")
    with pytest.raises(type(interrupt)) as raised:
        launcher.launch([["seed=1"]], 0)
    assert raised.value is interrupt
    assert "launcher" not in capsys.readouterr().err
    try:
        _composition_cut_by(interrupt)
    except Exception as exc:
        assert interrupt_behind(exc) is interrupt


def test_a_launcher_failure_without_an_interrupt_is_still_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hydra_plugins.cvsweep_sweeper.cvsweep_sweeper import _NamedLauncherErrors

    def refuse() -> None:
        try:
            raise KeyError("n_jobs")
        except KeyError as exc:
            raise ValueError("prefer=nosuch") from exc

    launcher = _NamedLauncherErrors(_Launcher(refuse), "hydra/launcher=joblib")
    with pytest.raises(SystemExit) as raised:
        launcher.launch([["seed=1"]], 0)
    assert raised.value.code == 1
    assert "the launcher (hydra/launcher=joblib) failed: ValueError: prefer=nosuch" in (
        capsys.readouterr().err
    )
