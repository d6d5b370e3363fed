"""Process-level setup for a run: seeds, device, threads."""

from __future__ import annotations

import os
import random

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


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
