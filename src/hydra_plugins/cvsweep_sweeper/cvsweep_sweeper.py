"""Hydra's basic sweeper, without a second composition of the jobs cvsweep has just checked.

cvsweep's sweep callback composes and checks every job before the sweep's parent run exists,
so that a bad sweep leaves no runs. Hydra's basic sweeper then composes every job again for
the same check (`validate_batch_is_legal`), and its launcher a third time to run it: about
0.08 s each on a 2-core machine. This sweeper skips the second composition for the jobs the
callback checked and is Hydra's BasicSweeper in everything else (`hydra/sweeper=basic` gives
the original back).

It lives in the `hydra_plugins` namespace because Hydra only instantiates sweepers found
there. Hydra imports every module of that namespace when it starts, in any Hydra program, so
this one imports nothing but Hydra at that time. (No `from __future__ import annotations`:
Hydra runs these modules before it registers them, and dataclasses then cannot resolve
string annotations.)
"""

from collections.abc import Sequence
from dataclasses import dataclass

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore


class CheckedBasicSweeper(BasicSweeper):
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
