"""Optimizers and lr schedulers from config: torch's own, with the settings a phase asks for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from .config import optimizer_config, total_epochs


@dataclass
class Phase:
    """A stretch of epochs trained with one optimizer and one fresh scheduler."""

    index: int
    epochs: int
    optimizer: DictConfig


def plan_phases(cfg: DictConfig) -> list[Phase]:
    if not cfg.schedule.phases:
        return [Phase(0, total_epochs(cfg), optimizer_config(cfg.optimizer, None))]
    return [
        Phase(i, int(p.epochs), optimizer_config(cfg.optimizer, p.optimizer))
        for i, p in enumerate(cfg.schedule.phases)
    ]


def optimizers_text(phases: list[Phase]) -> str:
    """The optimizer a run trains with, or each phase's in order: `sgd then adam`."""
    names = [str(p.optimizer.name) for p in phases]
    if len(set(names)) == 1:  # one optimizer throughout, however many phases
        return names[0]
    return " then ".join(names)


def build_optimizer(
    params: Any, opt: DictConfig, *, graph_safe: bool = False, fused: bool = False
) -> torch.optim.Optimizer:
    """torch.optim from settings; graph_safe keeps lr in a tensor and state on the device.

    A CUDA graph bakes Python floats into the captured kernels, so for graphs the lr must be a
    tensor that schedulers update in place, and the step counters must live on the device.
    """
    lr: float | torch.Tensor = float(opt.lr)
    extra: dict[str, Any] = {}
    if graph_safe:
        lr = torch.tensor(float(opt.lr), device="cuda")
    if opt.name == "sgd":
        if graph_safe or fused:
            extra["fused"] = True
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=float(opt.momentum),
            nesterov=bool(opt.nesterov),
            weight_decay=float(opt.weight_decay),
            **extra,
        )
    if opt.name in ("adam", "adamw"):
        if graph_safe:
            extra.update(capturable=True, fused=True)
        elif fused:
            extra["fused"] = True
        cls = torch.optim.Adam if opt.name == "adam" else torch.optim.AdamW
        return cls(
            params,
            lr=lr,
            betas=(float(opt.betas[0]), float(opt.betas[1])),
            eps=float(opt.eps),
            weight_decay=float(opt.weight_decay),
            **extra,
        )
    if opt.name == "rmsprop":
        if graph_safe:
            extra.update(capturable=True, foreach=True)
        return torch.optim.RMSprop(
            params,
            lr=lr,
            alpha=float(opt.alpha),
            eps=float(opt.eps),
            momentum=float(opt.momentum),
            weight_decay=float(opt.weight_decay),
            **extra,
        )
    raise ValueError(f"unknown optimizer {opt.name!r}")  # config validation prevents this


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: DictConfig,
    base_lr: float,
    epochs: int,
    steps_per_epoch: int,
) -> tuple[torch.optim.lr_scheduler.LRScheduler | None, bool]:
    """(scheduler or None, stepped per batch?) for one phase."""
    kind = schedule.scheduler
    if kind == "constant":
        return None, False
    if kind == "step":
        return (
            torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=int(schedule.step_size), gamma=float(schedule.gamma)
            ),
            False,
        )
    total = epochs * steps_per_epoch
    if kind == "cosine":
        return (
            torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=total, eta_min=float(schedule.min_lr)
            ),
            True,
        )
    if kind == "onecycle":
        if total < 3:  # too short for a warm-up and a decay: keep the lr constant
            return None, False
        pct = onecycle_pct(float(schedule.pct_start), total)
        return (
            torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=base_lr * float(schedule.max_lr_factor),
                total_steps=total,
                pct_start=pct,
                # Momentum/betas stay fixed: a CUDA graph bakes them in, and the eager and graph
                # paths must train the same way.
                cycle_momentum=False,
            ),
            True,
        )
    raise ValueError(f"unknown scheduler {kind!r}")  # config validation prevents this


def onecycle_pct(pct_start: float, total: int) -> float:
    """The warm-up share OneCycleLR gets: torch needs at least one step in each of its phases,
    so a share that leaves either without one is moved just enough (the run notes it)."""
    return min(max(pct_start, 1.5 / total), (total - 1.5) / total)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    lr = optimizer.param_groups[0]["lr"]
    return float(lr.item() if isinstance(lr, torch.Tensor) else lr)
