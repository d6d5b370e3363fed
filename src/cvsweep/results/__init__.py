"""`cvsweep report`: docs/results.md, rebuilt from the MLflow store alone.

Each question of the course assignment is an experiment preset (conf/experiment/<name>.yaml). The
preset is the single source of the question's text, the assignment's claims and its budget (its
`experiment:` notes node); the store is the single source of what was measured. This package joins
the two: one section per preset with the command, the settings actually run, claimed vs measured
(mean ± std over seeds), a figure and a discussion written from the numbers, so the document can
never say more than the runs show and can be regenerated at any time with one command.

Runs belong to a preset through the `experiment` param that job.py logs for the chosen preset.
Runs of one preset launched with extra overrides (a reduced CPU budget, a quick look) form a
separate *variant*, keyed by those overrides and the device, and are reported separately, so
numbers from different budgets are never averaged together.
"""

from __future__ import annotations

from .assemble import report_main
from .presets import PRESETS

__all__ = ["PRESETS", "report_main"]
