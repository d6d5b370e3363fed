"""What MLflow tracking costs a run: per run (whole process) and per log point.

Per run: ``python train.py`` with tracking off and on, same config, one process each, the two
sides interleaved round by round (the order alternates), all "on" runs sharing one SQLite store
(the first run creates it, as a user's first run does). Two configs: a tiny run (10 steps, where
fixed costs show) and a full 1-epoch run (the target's denominator: overhead < 1 s and < 5 %).

Per log point: in one process, the time the trainer spends in ``log_metrics`` (five metrics,
what one log point logs), and the time the tracking process needs to write them to the store,
measured as the wait for its barrier after the last point.

    python -m bench.tracking                      # CPU, 3 rounds: about 2.5 min on 2 cores
    python -m bench.tracking --rounds 1 --points 200 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

CONFIGS = {
    "tiny (10 steps, 2 evaluations)": ["trainer.epochs=1", "dataset.train_limit=640"],
    "1 epoch (938 steps at batch 64)": ["trainer.epochs=1"],
}


def _env(data: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONUNBUFFERED="1", MLFLOW_DISABLE_TELEMETRY="true")
    if data:
        env["CVSWEEP_DATA"] = data
    env.pop("CVSWEEP_NUM_THREADS", None)
    return env


def _train(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int, str]:
    """(process wall s, the job's own wall s, exit code, output tail)."""
    cmd = [sys.executable, str(REPO / "train.py"), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    job = re.search(r"wall time: ([0-9.]+) s", out)
    return wall, float(job.group(1)) if job else math.nan, proc.returncode, out.strip()[-600:]


def per_run(
    rounds: int, tmp: Path, data: str | None, configs: dict[str, list[str]] | None = None
) -> list[dict[str, Any]]:
    """Interleaved off/on runs of each config; one row per process."""
    env = _env(data)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    rows = []
    for name, overrides in (configs or CONFIGS).items():
        for r in range(rounds):
            for enabled in (False, True) if r % 2 == 0 else (True, False):
                args = [*overrides, "trainer.progress=off", "trainer.device=cpu"]
                args.append(f"hydra.run.dir={tmp}/run-{len(rows)}")
                if enabled:
                    args += [f"tracking.uri={uri}", "tracking.skip_finished=false"]
                else:
                    args.append("tracking.enabled=false")
                wall, job, rc, tail = _train(args, env, tmp)
                rows.append(
                    {
                        "config": name,
                        "round": r + 1,
                        "tracking": enabled,
                        "wall_s": wall if rc == 0 else math.nan,
                        "job_s": job,
                        "rc": rc,
                        "tail": "" if rc == 0 else tail,
                    }
                )
    return rows


def per_run_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name in dict.fromkeys(r["config"] for r in rows):
        on = [r["wall_s"] for r in rows if r["config"] == name and r["tracking"]]
        off = [r["wall_s"] for r in rows if r["config"] == name and not r["tracking"]]
        if not on or not off:
            continue
        on_m, off_m = statistics.median(on), statistics.median(off)
        out.append(
            {
                "config": name,
                "off_s": off_m,
                "on_s": on_m,
                "overhead_s": on_m - off_m,
                "overhead_pct": 100 * (on_m - off_m) / off_m,
            }
        )
    return out


def per_point(points: int, tmp: Path) -> dict[str, float]:
    """Trainer-side seconds per log point, and the store's write time per point."""
    from cvsweep.store_proxy import ProxyTracker, StoreProxy

    proxy = StoreProxy()
    try:
        uri = f"sqlite:///{tmp / 'points.db'}"
        t0 = time.perf_counter()
        opened = proxy.call("open_job", uri, "bench-points", None)
        ready_s = time.perf_counter() - t0
        run_id = proxy.call("create_run", uri, opened["experiment_id"], "points", {})
        tracker = ProxyTracker(proxy, uri, run_id)
        proxy.failures()  # barrier: the run exists and the worker is idle
        values = {"train_loss": 0.1, "train_acc": 0.9, "test_loss": 0.2, "test_acc": 0.8}
        t0 = time.perf_counter()
        for step in range(1, points + 1):
            tracker.log_metrics({**values, "lr": 1e-3 / step}, step=step)
        trainer_s = time.perf_counter() - t0
        failures = proxy.failures()  # returns once every point is in the store
        written_s = time.perf_counter() - t0
        finish_failures = tracker.finish("FINISHED")
    finally:
        proxy.close()
    if failures or finish_failures:
        raise RuntimeError(f"tracking failures: {failures + finish_failures}")
    return {
        "points": points,
        "store_ready_s": ready_s,
        "trainer_us_per_point": 1e6 * trainer_s / points,
        "store_us_per_point": 1e6 * written_s / points,
    }


def report(rows: list[dict[str, Any]], point: dict[str, float] | None) -> str:
    lines = [
        "| config | round | tracking | process wall s | job wall s | rc |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['round']} | {'on' if r['tracking'] else 'off'} "
            f"| {r['wall_s']:.2f} | {r['job_s']:.2f} | {r['rc']} |"
        )
        if r["tail"]:
            lines.append(f"    {r['tail']}")
    lines += ["", "| config | off s (median) | on s (median) | overhead s | overhead % |"]
    lines.append("|---|---|---|---|---|")
    for s in per_run_summary(rows):
        lines.append(
            f"| {s['config']} | {s['off_s']:.2f} | {s['on_s']:.2f} | **{s['overhead_s']:+.2f}** "
            f"| {s['overhead_pct']:+.1f} |"
        )
    if point:
        lines += [
            "",
            f"Per log point ({int(point['points'])} points of 5 metrics, one process): the "
            f"trainer spends **{point['trainer_us_per_point']:.0f} µs** in log_metrics; the "
            f"tracking process has them all in the store after "
            f"{point['store_us_per_point']:.0f} µs per point. (Store ready: "
            f"{point['store_ready_s']:.2f} s after the tracking process was started.)",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--only", choices=["tiny", "epoch"], help="one of the two configs")
    parser.add_argument("--data", default=os.environ.get("CVSWEEP_DATA"))
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    configs = dict(CONFIGS)
    if args.only:
        configs = {k: v for k, v in CONFIGS.items() if args.only in k}
    with tempfile.TemporaryDirectory(prefix="cvsweep-bench-tracking-") as tmp:
        point = per_point(args.points, Path(tmp)) if args.points > 0 else None
        rows = per_run(args.rounds, Path(tmp), args.data, configs)
    print(report(rows, point), flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"per_run": rows, "summary": per_run_summary(rows), "per_point": point})
        )
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
