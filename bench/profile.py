"""Where a whole `train.py` command spends its time: the command under cProfile, in-process.

    python -m bench.profile [--top N] [--out FILE.prof] -- train.py ARGS...

Prints the calls with the most cumulative and the most own time once the command exits. It
also works for sweeps and CUDA runs (the seconds of a CUDA call that waits for the device show
up in the Python call that waited). `train.py` leaves through its exit handlers and skips the
interpreter's teardown (docs/performance.md); the profile is written by an exit handler too,
so it covers the command up to its last line.
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import io
import pstats
import runpy
import sys
from pathlib import Path


def report(profile: cProfile.Profile, top: int, focus: str, out: Path | None) -> None:
    """Cumulative time of the calls whose location matches `focus`, then own time of all."""
    profile.disable()
    if out is not None:
        profile.dump_stats(str(out))
    text = io.StringIO()
    stats = pstats.Stats(profile, stream=text)
    stats.sort_stats("cumulative").print_stats(focus, top)
    stats.sort_stats("tottime").print_stats(top)
    sys.stdout.write(text.getvalue())
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=40, help="rows per table")
    parser.add_argument(
        "--focus",
        default=r"cvsweep/|torch/optim/|torch/cuda/graphs",
        help="regex: which calls the cumulative table lists (default: cvsweep's own and a few)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also save the raw profile")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- SCRIPT ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --, e.g. -- train.py trainer.epochs=1")
    profile = cProfile.Profile()
    atexit.register(report, profile, args.top, args.focus, args.out)
    sys.argv = command
    profile.enable()
    runpy.run_path(command[0], run_name="__main__")


if __name__ == "__main__":
    main()
