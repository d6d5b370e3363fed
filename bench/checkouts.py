"""Wall clock of one `train.py` command in two checkouts, interleaved round by round.

For measuring what a change does to a whole process (start-up, exit, a sweep's fixed costs),
where `bench.compare` measures epochs. Each run gets a fresh folder, so each starts a new store.

    git worktree add /tmp/before <commit>
    python -m bench.checkouts /tmp/before . --rounds 3 -- trainer.epochs=1 dataset.train_limit=2048
    python -m bench.checkouts /tmp/before . -- -m optimizer=sgd,adam augment=none,rot_flip
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(checkout: Path, args: list[str]) -> tuple[float, str]:
    """Seconds for `python train.py ARGS` from checkout's own sources, and its last summary."""
    env = dict(os.environ, PYTHONPATH=str(checkout / "src"), MLFLOW_DISABLE_TELEMETRY="true")
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(checkout / "train.py"), *args],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{checkout}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    summary = [
        ln for ln in proc.stdout.splitlines() if "final test accuracy" in ln or "sweep:" in ln
    ]
    return seconds, summary[-1] if summary else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], usage="%(prog)s BEFORE AFTER [--rounds N] -- ARGS"
    )
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    opts = parser.parse_args(argv[:split])
    args = argv[split + 1 :]
    sides = {"before": opts.before.resolve(), "after": opts.after.resolve()}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(opts.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            seconds, summary = run_once(sides[name], args)
            times[name].append(seconds)
            print(f"round {r} {name:>6}: {seconds:6.2f} s  {summary}", flush=True)
    print("\n| side | median s | min s | max s |\n|---|---:|---:|---:|")
    for name, values in times.items():
        print(
            f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
