"""The one entrypoint: `python train.py [overrides]`, or `python train.py -m a=x,y` to sweep."""

import sys
from pathlib import Path

# The checkout this file is in runs its own code and config, even where another checkout is
# the one installed (a second clone, a worktree for comparing commits). The processes it starts
# follow: the tracking process is started from the package's own folder, and the launchers'
# job processes are given this process's sys.path.
_SRC = str(Path(__file__).resolve().parent / "src")
if Path(_SRC, "cvsweep", "__init__.py").is_file():
    if _SRC in sys.path:
        sys.path.remove(_SRC)
    sys.path.insert(0, _SRC)

# Ctrl-C while the heavy modules load would stop Python inside a C extension's import (torch
# aborts the process then) or print an import traceback. It is held until they are loaded, and
# then ends the command cleanly (cvsweep.cli.ctrl_c_now_stops): a second or two later at most.
from cvsweep.signals import HeldSignals  # noqa: E402

_CTRL_C = HeldSignals().start()

from cvsweep.cli import hydra_main  # noqa: E402

if __name__ == "__main__":
    hydra_main(held_ctrl_c=_CTRL_C)
