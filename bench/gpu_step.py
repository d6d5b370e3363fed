"""Where one training step's time goes: the graph (or eager step) alone, the host work around
it, and the engine's whole loop, on one device, for one configuration.

A CUDA-graph replay costs the host a few microseconds, so the loop is as fast as the GPU
unless the host work between replays (index copy, lr scheduler) takes longer than the GPU's
part; this prints both, plus the kernels one step launches, to show which side bounds it.

    python -m bench.gpu_step --device cuda                      # adam, batch 64, onecycle
    python -m bench.gpu_step --device cuda --override optimizer=sgd --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _per_step(fn: Any, steps: int, device: torch.device) -> float:
    """Microseconds per call of fn(i), device work included."""
    _sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        fn(i)
    _sync(device)
    return 1e6 * (time.perf_counter() - t0) / steps


def _kernel_profile(graph: Any, device: torch.device, replays: int = 20) -> dict[str, Any]:
    """Kernels one replay launches and their summed device time."""
    activities = [torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(replays):
            graph.replay()
        _sync(device)
    kernels = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
    return {
        "kernels_per_step": sum(e.count for e in kernels) / replays,
        "kernel_us_per_step": sum(e.device_time_total for e in kernels) / replays,
        "top_kernels": [
            (e.key[:80], round(e.device_time_total / replays, 1), e.count // replays)
            for e in sorted(kernels, key=lambda e: -e.device_time_total)[:12]
        ],
    }


def measure(overrides: list[str], steps: int) -> dict[str, Any]:
    from bench.compare import compose_config
    from cvsweep import data as data_mod
    from cvsweep.engine import Trainer, _Accum
    from cvsweep.model import build_model
    from cvsweep.optim import build_optimizer, build_scheduler, plan_phases
    from cvsweep.runtime import configure_cudnn, device_name, resolve_device
    from cvsweep.tracker import NullTracker

    cfg = compose_config(["tracking.enabled=false", "trainer.progress=off", *overrides])
    device = resolve_device(cfg.trainer.device)
    configure_cudnn(cfg.trainer, device)
    raw = data_mod.load_raw(cfg.dataset.root, cfg.dataset.name)
    data = data_mod.to_device(
        raw, float(cfg.dataset.mean), float(cfg.dataset.std), device, None, None
    )
    out: dict[str, Any] = {"device": device_name(device), "overrides": overrides}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(cfg.model).to(device)
        trainer = Trainer(
            cfg, data, model, NullTracker(), Path(tmp), device, console=lambda _: None
        )
        phase = plan_phases(cfg)[0]
        optimizer = build_optimizer(
            model.parameters(),
            phase.optimizer,
            graph_safe=trainer.use_graphs,
            fused=trainer.speed.fused_optimizer,
        )
        scheduler, _ = build_scheduler(optimizer, cfg.schedule, float(phase.optimizer.lr), 10**6, 1)
        acc = _Accum.zeros(device)
        step = trainer._make_step(optimizer, acc)
        bs, spe = trainer.batch_size, trainer.steps_per_epoch
        perm = torch.randperm(trainer.n_train, device=device)

        def batch(i: int) -> torch.Tensor:
            b = i % spe
            return perm[b * bs : (b + 1) * bs]

        if trainer.use_graphs:
            for _ in range(trainer.GRAPH_WARMUP):
                trainer._warm_step(step, batch(0))
            graphed = trainer._capture(step, batch(0))
            out["graph_replay_us"] = _per_step(lambda i: graphed.graph.replay(), steps, device)
            out["copy_and_replay_us"] = _per_step(lambda i: graphed(batch(i)), steps, device)
            try:
                out.update(_kernel_profile(graphed.graph, device))
            except Exception as exc:  # the profiler differs between torch versions
                out["kernel_profile_error"] = f"{type(exc).__name__}: {exc}"
        else:
            out["eager_step_us"] = _per_step(lambda i: step(batch(i)), steps, device)
        static = batch(0).clone()
        out["host_index_copy_us"] = _per_step(lambda i: static.copy_(batch(i)), steps, device)
        if scheduler is not None:
            out["host_scheduler_step_us"] = _per_step(lambda i: scheduler.step(), steps, device)

    # The engine's own loop: one full epoch through Trainer.fit, no evaluation inside it.
    with tempfile.TemporaryDirectory() as tmp:
        epoch_cfg = compose_config(
            [
                "tracking.enabled=false",
                "trainer.progress=off",
                "trainer.epochs=1",
                "trainer.log_every=1000000",
                "trainer.checkpoint_every_epoch=false",
                *overrides,
            ]
        )
        model = build_model(epoch_cfg.model).to(device)
        trainer = Trainer(
            epoch_cfg, data, model, NullTracker(), Path(tmp), device, console=lambda _: None
        )
        result = trainer.fit()
        out["engine_epoch_s"] = result.epoch_times[0]
        out["engine_us_per_step"] = 1e6 * result.epoch_times[0] / result.steps
        out["engine_steps"] = result.steps
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--override", action="append", default=[], help="a train.py override")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    found = measure([f"trainer.device={args.device}", *args.override], args.steps)
    for key, value in found.items():
        if key == "top_kernels":
            print("top kernels (name, us per step, launches per step):")
            for row in value:
                print(f"    {row}")
        else:
            print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
