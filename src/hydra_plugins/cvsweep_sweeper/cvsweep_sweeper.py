"""Hydra's basic sweeper, without a second composition of the jobs cvsweep has just checked.

cvsweep's sweep callback composes and checks every job before the sweep's parent run exists,
so that a bad sweep leaves no runs. Hydra's basic sweeper then composes every job again for
the same check (`validate_batch_is_legal`), and its launcher a third time to run it: about
0.08 s each on a 2-core machine. This sweeper skips the second composition for the jobs the
callback checked and is Hydra's BasicSweeper in everything else (`hydra/sweeper=basic` gives
the original back).

It lives in the `hydra_plugins` namespace because Hydra only instantiates sweepers found
there. Hydra imports every module of that namespace when it starts, in any Hydra program, so
this one imports nothing but Hydra at that time.

It also names a launcher's own failure (a setting joblib refuses, a cluster submitit cannot
reach) in one paragraph, and records it as the reason on the sweep's parent run, where Hydra
would print a traceback of the launcher's insides. (No `from __future__ import annotations`:
Hydra runs these modules before it registers them, and dataclasses then cannot resolve
string annotations.)
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore


class _NamedLauncherErrors:
    """The sweep's launcher, whose failures (not its jobs': Hydra returns those) are named."""

    def __init__(self, launcher: Any, name: str) -> None:
        self.launcher = launcher
        self.name = name

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        try:
            return self.launcher.launch(job_overrides, initial_job_idx=initial_job_idx)
        except Exception as exc:
            from cvsweep.signals import interrupt_behind
            from cvsweep.sweep import launcher_failed

            interrupt = interrupt_behind(exc)
            if interrupt is not None:  # Ctrl-C while a job's config was composed
                raise interrupt from None
            launcher_failed(exc, self.name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.launcher, name)


class CheckedBasicSweeper(BasicSweeper):
    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        name = config.hydra.runtime.choices.get("hydra/launcher") or "basic"
        self.launcher = _NamedLauncherErrors(self.launcher, f"hydra/launcher={name}")

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from cvsweep.sweep import checked_job

        unchecked = [job for job in batch if not checked_job(self.config, job)]
        if unchecked:
            super().validate_batch_is_legal(unchecked)


@dataclass
class CheckedBasicSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.cvsweep_sweeper.cvsweep_sweeper.CheckedBasicSweeper"


ConfigStore.instance().store(
    group="hydra/sweeper", name="cvsweep", node=CheckedBasicSweeperConf, provider="cvsweep"
)
