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

from cvsweep.cli import hydra_main  # noqa: E402

if __name__ == "__main__":
    hydra_main()
