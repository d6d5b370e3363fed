"""Process-level setup for a run: seeds, device, threads."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .config import ConfigError


def seed_everything(seed: int) -> None:
    """Seed every generator a run may draw from, before the model is built."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "Invalid config value trainer.device='cuda': no CUDA device is available on this "
            "machine. Use trainer.device=auto or trainer.device=cpu."
        )
    return torch.device(requested)


def configure_threads(num_threads: int) -> int:
    """Apply trainer.num_threads (0 = leave torch's choice, or CVSWEEP_NUM_THREADS if set).

    Parallel launchers set CVSWEEP_NUM_THREADS so that jobs sharing a machine split the cores
    instead of each taking all of them.
    """
    if num_threads <= 0:
        env = os.environ.get("CVSWEEP_NUM_THREADS")
        num_threads = int(env) if env and env.isdigit() and int(env) > 0 else 0
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def set_deterministic(enabled: bool) -> None:
    """torch's deterministic algorithms; cuBLAS needs its workspace setting for that."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def configure_cudnn(trainer: Any, device: torch.device) -> bool:
    """cuDNN benchmark mode for this run; returns whether it is on.

    The step's shapes never change, so timing cuDNN's algorithms once per shape pays off at
    once: on an H200 the default choices spent a third of the step in two slow convolution
    kernels. Deterministic runs keep cuDNN's fixed choices.
    """
    mode = {"true": "on", "false": "off"}.get(
        str(trainer.cudnn_benchmark).lower(), str(trainer.cudnn_benchmark).lower()
    )
    on = device.type == "cuda" and not trainer.deterministic and mode in ("auto", "on")
    torch.backends.cudnn.benchmark = on
    return on


@dataclass(frozen=True)
class SpeedSettings:
    """How the step runs on this device; results differ only by float rounding."""

    channels_last: bool
    bf16: bool
    fused_optimizer: bool


def speed_settings(trainer: Any, device: torch.device) -> SpeedSettings:
    """Resolve the `auto` choices: measured wins on CPU (docs/performance.md), none on CUDA.

    On CUDA the step is already a replayed graph; its eager and graph paths are verified in
    fp32, so the GPU keeps fp32 and the default layout unless asked otherwise.
    """
    cpu = device.type == "cpu"
    layout = {"true": "on", "false": "off"}.get(
        str(trainer.channels_last).lower(), str(trainer.channels_last).lower()
    )
    channels_last = layout == "on" or (layout == "auto" and cpu)
    if trainer.precision == "auto":
        bf16 = cpu and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    else:
        bf16 = trainer.precision == "bf16"
    return SpeedSettings(channels_last=channels_last, bf16=bf16, fused_optimizer=cpu)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
