"""cvsweep against the plain-PyTorch reference, interleaved, plus the fixed costs of a run.

``python -m bench.compare`` trains the reference loop (bench/reference.py) and the real cvsweep
engine (``cvsweep.job.run_job`` on a config composed by Hydra from conf/) in turn, for every
batch size x augmentation, several rounds, and prints seconds per epoch, the ratio, the final
test accuracy of both and the peak memory. Then it times what a ``python train.py`` pays around
the epochs: interpreter start and imports, data load, the first step, evaluation and tracking.

Fairness rules, so the ratio means something:
- Interleaved rounds, with the order of the two sides alternating per round, so a drift of the
  machine (other jobs, thermal, page cache) hits both sides alike.
- On CPU every run is a forked child of a parent that has imported everything but never run a
  torch op: import time is paid once, each run starts from the same clean state, and the child's
  ``ru_maxrss`` is that run's own peak RSS. On CUDA runs stay in-process (forking after CUDA
  init is unsafe) and peak memory is ``torch.cuda.max_memory_allocated``.
- The same seed, model (cvsweep's builder), optimizer settings, batch size, epochs and training
  images on both sides; round r uses seed ``--seed + r`` on both, so accuracies show noise.
- Every CPU run also records "other load", the CPU share other processes took meanwhile: on a
  shared 2-vCPU machine that, not the code, can swing an epoch 10-20x.
- Fixed costs run first; the rounds then get what is left of ``--time-budget`` (a case that
  would end past it is skipped, and the skip is printed); only the case running at the deadline
  can overrun it, so even a busy machine finishes the default run in about 8-9 minutes.
- The seconds of an epoch cover training only. cvsweep runs with ``schedule=constant`` (the
  reference has no scheduler) and a ``trainer.log_every`` beyond the epoch, so no evaluation
  falls inside the timed epoch; evaluation is timed on its own under "fixed costs".
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
FULL_EPOCH = 60000  # images in a full MNIST / Fashion-MNIST training epoch
DEFAULT_TRAIN_LIMIT = 10000
NO_EVAL_IN_EPOCH = 10**9  # trainer.log_every that no epoch reaches


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Case:
    """One cell of the comparison grid."""

    batch_size: int
    augment: str

    @property
    def label(self) -> str:
        return f"b{self.batch_size}/{self.augment}"


@dataclass
class Settings:
    """Everything both sides share, from the command line."""

    device: str
    dataset: str
    optimizer: str
    epochs: int
    train_limit: int | None
    num_workers: int
    seed: int
    data: Path
    overrides: list[str] = field(default_factory=list)  # extra cvsweep overrides (A/B tests)

    @property
    def images(self) -> int:
        return FULL_EPOCH if self.train_limit is None else min(self.train_limit, FULL_EPOCH)


@dataclass
class RunResult:
    side: str  # reference | cvsweep
    case: Case
    round: int
    seed: int
    epoch_times: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0
    test_acc: float = float("nan")
    peak_mem_mib: float = float("nan")
    worker_mem_mib: float = float("nan")  # largest DataLoader worker (reference, CPU)
    other_load: float = float("nan")  # CPU share other processes took during the run (CPU)
    error: str | None = None


# --------------------------------------------------------------------------- isolation
def _rss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


def _child_main(conn: Any, fn: Callable[..., dict[str, Any]], kwargs: dict[str, Any]) -> None:
    try:
        out = fn(**kwargs)
        out["peak_mem_mib"] = _rss_mib(resource.RUSAGE_SELF)
        out["worker_mem_mib"] = _rss_mib(resource.RUSAGE_CHILDREN)
    except BaseException as exc:  # report, never hang the parent
        out = {"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}
    conn.send(out)
    conn.close()


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat; (0, 0) where absent."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    total = sum(fields)
    return total - fields[3] - fields[4], total  # idle and iowait are not busy


def cpu_idle(window: float = 1.0) -> float:
    """Fraction of all CPUs idle over `window` seconds (1.0 on a quiet machine)."""
    b0, t0 = _cpu_jiffies()
    time.sleep(window)
    b1, t1 = _cpu_jiffies()
    return 1.0 - (b1 - b0) / (t1 - t0) if t1 > t0 else math.nan


def run_isolated(fn: Callable[..., dict[str, Any]], where: str, **kwargs: Any) -> dict[str, Any]:
    """Run fn in a forked child on CPU (clean state, own peak RSS) or in-process on CUDA."""
    if where == "cuda":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            out = fn(**kwargs)
        except Exception as exc:
            return {"error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}
        out["peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
        return out
    ctx = mp.get_context("fork")
    busy0, _ = _cpu_jiffies()
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(child, fn, kwargs))
    proc.start()
    child.close()
    try:
        out = parent.recv()
    except EOFError:
        out = {"error": "benchmark child died without a result"}
    proc.join()
    if proc.exitcode not in (0, None) and "error" not in out:
        out["error"] = f"benchmark child exited with {proc.exitcode}"
    # CPU the rest of the machine used meanwhile: all busy time minus this run's own (the
    # child and its DataLoader workers), as a fraction of the run's wall time on all CPUs.
    busy1, _ = _cpu_jiffies()
    own1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (own1.ru_utime - own0.ru_utime) + (own1.ru_stime - own0.ru_stime)
    busy = (busy1 - busy0) / os.sysconf("SC_CLK_TCK")
    capacity = (time.perf_counter() - wall0) * (os.cpu_count() or 1)
    out["other_load"] = max(busy - own, 0.0) / capacity if capacity > 0 else math.nan
    return out


# --------------------------------------------------------------------------- the two sides
def cvsweep_overrides(s: Settings, case: Case, seed: int, device: str) -> list[str]:
    limit = "null" if s.train_limit is None else str(s.train_limit)
    return [
        f"dataset={s.dataset}",
        f"dataset.root={s.data}",
        f"dataset.train_limit={limit}",
        f"optimizer={s.optimizer}",
        f"augment={case.augment}",
        "schedule=constant",
        f"trainer.batch_size={case.batch_size}",
        f"trainer.epochs={s.epochs}",
        f"trainer.log_every={NO_EVAL_IN_EPOCH}",
        f"trainer.device={device}",
        "trainer.progress=off",
        "tracking.enabled=false",
        f"seed={seed}",
        *s.overrides,
    ]


def compose_config(overrides: list[str]) -> Any:
    """The config exactly as ``python train.py OVERRIDES`` would get it (minus hydra's node)."""
    from hydra import compose, initialize_config_dir

    from cvsweep.config import register_schemas

    register_schemas()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)


def run_cvsweep(overrides: list[str]) -> dict[str, Any]:
    """One real job through ``run_job``; epoch times come from the checkpoint it writes."""
    from cvsweep.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from cvsweep.job import JobContext, run_job

    cfg = compose_config(overrides)
    with tempfile.TemporaryDirectory(prefix="cvsweep-bench-") as tmp:
        console = io.StringIO()
        with contextlib.redirect_stdout(console):
            outcome = run_job(cfg, JobContext(output_dir=Path(tmp), overrides=overrides))
        if outcome.status != "FINISHED":
            raise RuntimeError(f"run_job {outcome.status}: {outcome.error}\n{console.getvalue()}")
        state = load_checkpoint(Path(tmp) / CHECKPOINT_NAME)
    epochs = max(len(state["epoch_times"]), 1)
    return {
        "epoch_times": list(state["epoch_times"]),
        "steps_per_epoch": int(state["step"]) // epochs,
        "test_acc": float(outcome.final_test_acc or float("nan")),
    }


def run_reference(s: Settings, case: Case, seed: int, device: str, root: Path) -> dict[str, Any]:
    from bench.reference import ReferenceConfig, train_reference

    cfg = ReferenceConfig(
        dataset=s.dataset,
        optimizer=s.optimizer,
        augment=case.augment,
        batch_size=case.batch_size,
        epochs=s.epochs,
        train_limit=s.train_limit,
        num_workers=s.num_workers,
        seed=seed,
        device=device,
    )
    res = train_reference(cfg, root)
    return {
        "epoch_times": res.epoch_times,
        "steps_per_epoch": res.steps_per_epoch,
        "test_acc": res.test_acc,
    }


# --------------------------------------------------------------------------- statistics
def summarize(times: Sequence[float]) -> tuple[float, float, float]:
    if not times:
        return (math.nan, math.nan, math.nan)
    return statistics.median(times), min(times), max(times)


def _mean_std(values: Sequence[float]) -> str:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "n/a"
    mean = 100 * statistics.fmean(vals)
    if len(vals) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f}±{100 * statistics.stdev(vals):.2f}"


def _fmt_mem(values: Sequence[float]) -> str:
    vals = [v for v in values if not math.isnan(v)]
    return f"{max(vals):.0f}" if vals else "n/a"


def _fmt_load(runs: Sequence[RunResult]) -> str:
    vals = [r.other_load for r in runs if not math.isnan(r.other_load)]
    return f"{100 * max(vals):.0f}" if vals else "n/a"


def comparison_table(results: list[RunResult], cases: list[Case], s: Settings) -> str:
    """Markdown table: one row per case; per-epoch seconds pooled over all rounds and epochs.

    The ratio of medians is the headline; the ratio of minimums is shown next to it because on a
    shared machine the fastest run of each side is the one least disturbed by other load.
    """
    scale = FULL_EPOCH / s.images
    head = (
        "| batch | augment | reference s/epoch med [min–max] | cvsweep s/epoch med [min–max] "
        "| ref/cvsweep (medians) | (mins) | ref s per 60k | cvsweep s per 60k | cvsweep ms/step "
        "| test acc % ref | test acc % cvsweep | peak MiB ref (+worker) | peak MiB cvsweep "
        "| other load % (max) |"
    )
    lines = [head, "|" + "---|" * 14]
    for case in cases:
        by_side = {
            side: [r for r in results if r.case == case and r.side == side and r.error is None]
            for side in ("reference", "cvsweep")
        }
        ref_t = [t for r in by_side["reference"] for t in r.epoch_times]
        cvs_t = [t for r in by_side["cvsweep"] for t in r.epoch_times]
        rm, rlo, rhi = summarize(ref_t)
        cm, clo, chi = summarize(cvs_t)
        ratio = rm / cm if cm and not math.isnan(cm) else math.nan
        ratio_min = rlo / clo if clo and not math.isnan(clo) else math.nan
        steps = by_side["cvsweep"][0].steps_per_epoch if by_side["cvsweep"] else 0
        ms_step = 1000 * cm / steps if steps else math.nan
        worker = _fmt_mem([r.worker_mem_mib for r in by_side["reference"]])
        ref_mem = _fmt_mem([r.peak_mem_mib for r in by_side["reference"]])
        if s.device == "cpu" and s.num_workers > 0 and worker != "n/a":
            ref_mem = f"{ref_mem} (+{worker})"
        lines.append(
            f"| {case.batch_size} | {case.augment} | {rm:.2f} [{rlo:.2f}–{rhi:.2f}] "
            f"| {cm:.2f} [{clo:.2f}–{chi:.2f}] | **{ratio:.2f}×** | {ratio_min:.2f}× "
            f"| {rm * scale:.1f} | {cm * scale:.1f} | {ms_step:.1f} "
            f"| {_mean_std([r.test_acc for r in by_side['reference']])} "
            f"| {_mean_std([r.test_acc for r in by_side['cvsweep']])} "
            f"| {ref_mem} | {_fmt_mem([r.peak_mem_mib for r in by_side['cvsweep']])} "
            f"| {_fmt_load(by_side['reference'] + by_side['cvsweep'])} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- fixed costs
def _subprocess_wall(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str, int]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    return time.perf_counter() - t0, proc.stdout + proc.stderr, proc.returncode


def _clean_env(s: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(CVSWEEP_DATA=str(s.data), PYTHONUNBUFFERED="1")
    env.pop("CVSWEEP_NUM_THREADS", None)
    return env


def startup_costs(s: Settings, rounds: int) -> list[tuple[str, list[float]]]:
    """Wall seconds of fresh interpreters doing only the imports a run starts with."""
    py = sys.executable
    commands = [
        ("python -c pass", [py, "-c", "pass"]),
        ("python -c 'import torch'", [py, "-c", "import torch"]),
        ("python -c 'import cvsweep.cli'", [py, "-c", "import cvsweep.cli"]),
        ("python -c 'import cvsweep.job' (torch + run glue)", [py, "-c", "import cvsweep.job"]),
        ("python train.py --help (Hydra + compose)", [py, str(REPO / "train.py"), "--help"]),
    ]
    walls: dict[str, list[float]] = {name: [] for name, _ in commands}
    env = _clean_env(s)
    for _ in range(rounds):
        for name, cmd in commands:
            wall, out, rc = _subprocess_wall(cmd, env, REPO)
            walls[name].append(wall if rc == 0 else math.nan)
            if rc != 0:
                print(f"  warning: {name} exited {rc}: {out.strip()[-300:]}")
    return list(walls.items())


def in_process_costs(s: Settings, device: str, batch_size: int) -> dict[str, Any]:
    """Data load, model build, first step and evaluation, timed in a fresh worker process.

    Run through ``python -m bench.compare --fixed-costs-worker`` so the import and the data
    load are cold, as in a user's ``python train.py``.
    """
    t0 = time.perf_counter()
    import torch

    from cvsweep import data as data_mod
    from cvsweep.engine import evaluate
    from cvsweep.job import run_job  # noqa: F401  (timed: what train.py imports)
    from cvsweep.model import build_model

    out: dict[str, Any] = {"import_s": time.perf_counter() - t0}
    case = Case(batch_size, "none")
    t0 = time.perf_counter()
    cfg = compose_config(cvsweep_overrides(s, case, s.seed, device))
    out["compose_s"] = time.perf_counter() - t0
    dev = torch.device(device)
    t0 = time.perf_counter()
    raw = data_mod.load_raw(cfg.dataset.root, cfg.dataset.name)
    out["load_raw_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = data_mod.to_device(
        raw, float(cfg.dataset.mean), float(cfg.dataset.std), dev, cfg.dataset.train_limit
    )
    if dev.type == "cuda":
        torch.cuda.synchronize()
    out["to_device_s"] = time.perf_counter() - t0
    model = build_model(cfg.model).to(dev)

    # One step per epoch: epoch_times[0] is the first step, a second job shows the warm step.
    one_step = cvsweep_overrides(s, case, s.seed, device)
    one_step = [o for o in one_step if not o.startswith("dataset.train_limit=")]
    one_step.append(f"dataset.train_limit={batch_size}")
    for key in ("first_step", "second_job_step"):
        t0 = time.perf_counter()
        res = run_cvsweep(one_step)
        out[f"{key}_job_s"] = time.perf_counter() - t0
        out[f"{key}_s"] = res["epoch_times"][0]

    evals = []
    for _ in range(3):
        t0 = time.perf_counter()
        loss, acc = evaluate(model, data.test_x, data.test_y, int(cfg.trainer.eval_batch_size))
        float(acc.item())
        evals.append(time.perf_counter() - t0)
    out["eval_s"] = evals
    out["eval_batch_size"] = int(cfg.trainer.eval_batch_size)
    out["test_images"] = len(data.test_y)
    out["log_every_default"] = int(compose_config([]).trainer.log_every)
    return out


def tracking_costs(s: Settings, rounds: int, tmp: Path) -> list[dict[str, Any]]:
    """``python train.py`` on a tiny config with tracking off and on, interleaved.

    The same measurement as ``python -m bench.tracking`` (which also times a 1-epoch run and
    the cost per log point), on this benchmark's dataset.
    """
    from bench.tracking import per_run

    tiny = [f"dataset={s.dataset}", "trainer.epochs=1", "dataset.train_limit=640"]
    return per_run(rounds, tmp, str(s.data), {"tiny": tiny})


# --------------------------------------------------------------------------- the driver
def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "n/a"


def _devices(requested: str) -> list[str]:
    if requested in ("cpu", "cuda"):
        return [requested]
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def _run_one(s: Settings, side: str, case: Case, r: int, root: Path) -> RunResult:
    seed = s.seed + r
    if side == "reference":
        out = run_isolated(
            run_reference, s.device, s=s, case=case, seed=seed, device=s.device, root=root
        )
    else:
        out = run_isolated(
            run_cvsweep, s.device, overrides=cvsweep_overrides(s, case, seed, s.device)
        )
    res = RunResult(side=side, case=case, round=r + 1, seed=seed)
    for key in ("epoch_times", "steps_per_epoch", "test_acc", "peak_mem_mib", "other_load"):
        if key in out:
            setattr(res, key, out[key])
    if s.device == "cpu" and side == "reference":
        res.worker_mem_mib = out.get("worker_mem_mib", math.nan)
    res.error = out.get("error")
    return res


def compare_device(
    s: Settings,
    cases: list[Case],
    rounds: int,
    root: Path,
    log: Callable[[str], None],
    deadline: float = math.inf,
) -> list[RunResult]:
    """All rounds, interleaved; a case is skipped when it would end past the deadline.

    A case's cost is known from its first round; in round 1 a case only is skipped once the
    deadline has passed. This keeps the default run inside its time budget on a loaded machine,
    and every skip is printed.
    """
    results: list[RunResult] = []
    case_cost: dict[Case, float] = {}
    for r in range(rounds):
        for case in cases:
            expected = case_cost.get(case, 0.0)  # unknown in round 1: run unless already late
            if time.perf_counter() + expected > deadline:
                log(f"  round {r + 1} {case.label:<14} skipped: --time-budget reached")
                continue
            t0 = time.perf_counter()
            sides = ("reference", "cvsweep") if r % 2 == 0 else ("cvsweep", "reference")
            for side in sides:
                res = _run_one(s, side, case, r, root)
                results.append(res)
                if res.error:
                    log(f"  round {r + 1} {case.label:<14} {side:<9} FAILED: {res.error}")
                    continue
                times = " ".join(f"{t:.2f}" for t in res.epoch_times)
                log(
                    f"  round {r + 1} {case.label:<14} {side:<9} s/epoch {times}  "
                    f"acc {100 * res.test_acc:.2f}%  peak {res.peak_mem_mib:.0f} MiB"
                    + (
                        f"  other load {100 * res.other_load:.0f}%"
                        if not math.isnan(res.other_load)
                        else ""
                    )
                )
            case_cost[case] = time.perf_counter() - t0
    return results


def report_fixed_costs(
    s: Settings, device: str, batch_size: int, rounds: int, tmp: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    log(f"\n## Fixed costs of a run ({device})\n")
    startup = startup_costs(s, rounds)
    log("| what | wall s (each round) |\n|---|---|")
    for name, walls in startup:
        log(f"| {name} | {' / '.join(f'{w:.2f}' for w in walls)} |")
    cmd = [
        sys.executable,
        "-m",
        "bench.compare",
        "--fixed-costs-worker",
        json.dumps({**asdict(s), "data": str(s.data), "device": device, "batch": batch_size}),
    ]
    wall, out, rc = _subprocess_wall(cmd, _clean_env(s), REPO)
    inproc: dict[str, Any] = {}
    if rc == 0:
        inproc = json.loads(out.strip().splitlines()[-1])
        ev = inproc["eval_s"]
        log(
            f"\nIn one fresh process (batch {batch_size}, {s.images} train images):\n\n"
            "| what | seconds |\n|---|---|\n"
            f"| import torch + cvsweep.job (in-process) | {inproc['import_s']:.2f} |\n"
            f"| Hydra compose | {inproc['compose_s']:.2f} |\n"
            f"| data: load_raw (read + gunzip + SHA-256, cold) | {inproc['load_raw_s']:.2f} |\n"
            f"| data: to_device (normalize, {device}) | {inproc['to_device_s']:.2f} |\n"
            f"| first training step (1-step epoch of the first job) | "
            f"{inproc['first_step_s']:.3f} |\n"
            f"| same, second job in the process | {inproc['second_job_step_s']:.3f} |\n"
            f"| whole run_job of the second 1-step job | {inproc['second_job_step_job_s']:.2f} |\n"
            f"| whole run_job of that 1-step job (prepare, report, torch._dynamo import by "
            "torch.optim, eval, checkpoint) | "
            f"{inproc['first_step_job_s']:.2f} |\n"
            f"| evaluate() on {inproc['test_images']} test images, eval_batch_size "
            f"{inproc['eval_batch_size']} (1st / 2nd / 3rd call) | "
            f"{' / '.join(f'{e:.2f}' for e in ev)} |"
        )
    else:
        log(f"fixed-costs worker failed (rc {rc}):\n{out[-2000:]}")
    tracking: list[dict[str, Any]] = []
    if device == "cpu":
        tracking = tracking_costs(s, rounds, tmp)
        log(
            "\nTracking overhead: `python train.py trainer.epochs=1 dataset.train_limit=640` "
            "(10 steps at batch 64, 2 evaluations), tracking off vs on (SQLite), interleaved:\n"
        )
        log("| round | tracking | process wall s | run_job wall s | rc |\n|---|---|---|---|---|")
        for row in tracking:
            log(
                f"| {row['round']} | {'on' if row['tracking'] else 'off'} | {row['wall_s']:.2f} "
                f"| {row['job_s']:.2f} | {row['rc']} |"
            )
            if row["tail"]:
                log(f"    {row['tail']}")
        on = [r["wall_s"] for r in tracking if r["tracking"]]
        off = [r["wall_s"] for r in tracking if not r["tracking"]]
        if on and off:
            log(
                f"\ntracking costs {statistics.median(on) - statistics.median(off):+.2f} s "
                "per run (median process wall, on - off)"
            )
    return {"startup": startup, "in_process": inproc, "tracking": tracking}


def explain_default_run(
    results: list[RunResult], fixed: dict[str, Any], s: Settings, log: Callable[[str], None]
) -> None:
    """Add the measured parts up to the wall time of a default ``python train.py`` on CPU."""
    inproc = fixed.get("in_process") or {}
    b64 = [
        t
        for r in results
        if r.side == "cvsweep" and r.case == Case(64, "none") and r.error is None
        for t in r.epoch_times
    ]
    if not inproc or not b64:
        return
    epoch_60k = statistics.median(b64) * FULL_EPOCH / s.images
    epochs, steps = 3, FULL_EPOCH // 64
    log_every = int(inproc.get("log_every_default", 1000))
    total = epochs * steps
    evals = total // log_every + sum(
        1 for e in range(1, epochs + 1) if (e * steps) % log_every != 0
    )
    eval_s = statistics.median(inproc["eval_s"])
    walls = {name: statistics.median(w) for name, w in fixed["startup"]}
    bare = walls.get("python -c pass", 0.0)
    hydra_part = walls.get("python train.py --help (Hydra + compose)", math.nan)
    torch_part = walls.get("python -c 'import cvsweep.job' (torch + run glue)", math.nan) - bare
    track = fixed.get("tracking") or []
    on = [r["wall_s"] for r in track if r["tracking"]]
    off = [r["wall_s"] for r in track if not r["tracking"]]
    tracking = statistics.median(on) - statistics.median(off) if on and off else math.nan
    parts = [
        ("interpreter + Hydra + compose (train.py --help)", hydra_part),
        ("import torch + run glue (import cvsweep.job - bare python)", torch_part),
        ("data load + to_device", inproc["load_raw_s"] + inproc["to_device_s"]),
        (
            "first-step warm-up (first step - steady step)",
            inproc["first_step_s"] - epoch_60k / steps,
        ),
        (
            f"{epochs} epochs x {steps} steps at batch 64 (b64/none median, scaled)",
            epochs * epoch_60k,
        ),
        (f"{evals} evaluations (log_every={log_every} + epoch ends)", evals * eval_s),
        ("MLflow tracking (measured overhead on the tiny run)", tracking),
    ]
    log(
        "\nExplaining `python train.py` (defaults: 3 epochs, batch 64, onecycle, tracking on), "
        "CPU, from the numbers above:\n\n| part | seconds |\n|---|---|"
    )
    for name, secs in parts:
        log(f"| {name} | {secs:.1f} |")
    log(f"| **sum** | **{sum(p for _, p in parts if not math.isnan(p)):.1f}** |")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="auto: CPU, plus CUDA when present",
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per case")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument(
        "--train-limit",
        type=int,
        default=DEFAULT_TRAIN_LIMIT,
        help="first N training images on both sides; 0 = all 60000",
    )
    p.add_argument("--batch-sizes", default="16,64,256")
    p.add_argument("--augment", default="none,rot_flip")
    p.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist"])
    p.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"])
    p.add_argument(
        "--num-workers",
        type=int,
        default=2,
        help="reference DataLoader workers (2 = one per core here)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--override",
        action="append",
        default=[],
        help="extra cvsweep override, e.g. trainer.channels_last=true (repeatable)",
    )
    p.add_argument(
        "--fixed-rounds",
        type=int,
        default=2,
        help="rounds of the start-up and tracking subprocess timings",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        default=480,
        help="seconds for the whole run; cases that would end past it are skipped (0 = none)",
    )
    p.add_argument("--no-fixed-costs", action="store_true")
    p.add_argument("--fixed-costs-only", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write raw results here")
    p.add_argument("--fixed-costs-worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _fixed_costs_worker(spec: str) -> None:
    raw = json.loads(spec)
    batch = raw.pop("batch")
    raw["data"] = Path(raw["data"])
    s = Settings(**raw)
    out = in_process_costs(s, s.device, batch)
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fixed_costs_worker is not None:
        _fixed_costs_worker(args.fixed_costs_worker)
        return 0
    from bench.reference import data_dir, prepare_root

    t_start = time.perf_counter()
    limit = None if args.train_limit <= 0 else args.train_limit
    cases = [Case(int(b), a) for b in args.batch_sizes.split(",") for a in args.augment.split(",")]
    lines: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    report: dict[str, Any] = {"machine": _machine(), "devices": {}}
    deadline = t_start + args.time_budget if args.time_budget > 0 else math.inf
    log(f"# bench.compare — {report['machine']}")
    idle = cpu_idle()
    log(f"load average at start: {_loadavg()}; CPU idle over 1 s: {100 * idle:.0f}%")
    if idle < 0.7:
        log(
            "warning: the machine is busy; absolute times are inflated, the interleaved ratios "
            "less so. Each run prints the CPU share other processes took while it ran."
        )
    with tempfile.TemporaryDirectory(prefix="cvsweep-compare-") as tmp_name:
        tmp = Path(tmp_name)
        root = prepare_root(args.dataset, tmp / "torchvision")
        for device in _devices(args.device):
            s = Settings(
                device=device,
                dataset=args.dataset,
                optimizer=args.optimizer,
                epochs=args.epochs,
                train_limit=limit,
                num_workers=args.num_workers,
                seed=args.seed,
                data=data_dir().resolve(),
                overrides=list(args.override),
            )
            entry: dict[str, Any] = {}
            fixed: dict[str, Any] = {}
            results: list[RunResult] = []
            # Fixed costs first: they are few and bounded, the rounds then fill the budget.
            if not args.no_fixed_costs:
                fixed = report_fixed_costs(s, device, 64, args.fixed_rounds, tmp, log)
                entry["fixed"] = fixed
            if not args.fixed_costs_only:
                import torch

                threads = torch.get_num_threads()
                log(
                    f"\n## Reference vs cvsweep on {device}: {s.dataset}, {s.images} training "
                    f"images per epoch (--train-limit; x{FULL_EPOCH / s.images:g} for a full "
                    f"epoch), {s.epochs} epoch(s), {args.rounds} rounds, optimizer "
                    f"{s.optimizer}, reference DataLoader num_workers={s.num_workers}, "
                    f"torch threads {threads}"
                    + (f", cvsweep overrides {s.overrides}" if s.overrides else "")
                    + "\n"
                )
                results = compare_device(s, cases, args.rounds, root, log, deadline)
                log("")
                log(comparison_table(results, cases, s))
                entry["results"] = [asdict(r) for r in results]
            if device == "cpu" and fixed and results:
                explain_default_run(results, fixed, s, log)
            report["devices"][device] = entry
    log(
        f"\nload average at end: {_loadavg()}; CPU idle over 1 s: {100 * cpu_idle():.0f}%; "
        "benchmark wall time "
        f"{time.perf_counter() - t_start:.0f} s"
    )
    report["log"] = lines
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
