"""Wall time of one sweep under Hydra's basic launcher vs its joblib launcher.

    python -m bench.launchers [--rounds 1] [--train-limit 2048] [--n-jobs 2]

Runs `python train.py -m optimizer=sgd,adam augment=none,rot_flip trainer.epochs=1
dataset.train_limit=N` both ways (interleaved, each into a fresh SQLite store) and prints the
wall seconds of each and their ratio. Parallel jobs split the cores between them
(CVSWEEP_NUM_THREADS), so on a 2-core machine the gain comes from overlapping start-up, data
loading, evaluation and logging, not from more arithmetic.
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

REPO = Path(__file__).resolve().parents[1]
SWEEP = ["-m", "optimizer=sgd,adam", "augment=none,rot_flip", "trainer.epochs=1"]


def run_sweep(launcher: list[str], train_limit: int, folder: Path) -> float:
    """Seconds of wall clock for one whole sweep command; raises when it fails."""
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        *SWEEP,
        *launcher,
        f"dataset.train_limit={train_limit}",
        "trainer.progress=off",
        f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
        f"hydra.sweep.dir={folder / 'multirun'}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(launcher) or 'basic'} sweep failed:\n{proc.stderr[-2000:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--train-limit", type=int, default=2048)
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args(argv)
    launchers = {
        "basic": [],
        f"joblib n_jobs={args.n_jobs}": [
            "hydra/launcher=joblib",
            f"hydra.launcher.n_jobs={args.n_jobs}",
        ],
    }
    walls: dict[str, list[float]] = {name: [] for name in launchers}
    for r in range(args.rounds):
        order = list(launchers.items()) if r % 2 == 0 else list(reversed(launchers.items()))
        for name, extra in order:
            with tempfile.TemporaryDirectory() as tmp:
                walls[name].append(run_sweep(extra, args.train_limit, Path(tmp)))
            print(f"round {r + 1} {name:<16} {walls[name][-1]:7.1f} s", flush=True)
    print(f"\n2x2 sweep, 1 epoch, train_limit={args.train_limit}, {os.cpu_count()} CPUs\n")
    print("| launcher | wall s (median) | runs |")
    print("|---|---:|---:|")
    for name, values in walls.items():
        print(f"| {name} | {statistics.median(values):.1f} | {len(values)} |")
    base, par = (statistics.median(v) for v in walls.values())
    print(f"\nbasic / joblib = {base / par:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
