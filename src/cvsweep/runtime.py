"""Process-level setup for a run: seeds, device, threads, host memory."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import random
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .config import MAX_THREADS, ConfigError
from .identity import switch_word


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
    global _TORCH_THREADS
    if _TORCH_THREADS is None:
        _TORCH_THREADS = torch.get_num_threads()
    if num_threads <= 0:
        num_threads = _launcher_threads() or _TORCH_THREADS
    if num_threads != torch.get_num_threads():
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def _launcher_threads() -> int | None:
    """CVSWEEP_NUM_THREADS, where set: torch asked for 100000 threads ended in a segfault."""
    env = os.environ.get("CVSWEEP_NUM_THREADS", "").strip()
    if not env:
        return None
    if not env.isdigit() or not 1 <= int(env) <= MAX_THREADS:
        raise ConfigError(
            f"CVSWEEP_NUM_THREADS={env!r} is not a thread count from 1 to {MAX_THREADS} (parallel "
            "launchers set it to each job's share of the cores; trainer.num_threads=0 reads it). "
            "Unset it, or set a count in that range."
        )
    return int(env)


# torch's own thread count, before any job set one: the jobs of a sweep run one after another in
# one process, and a job that leaves the choice to torch must not inherit the previous job's.
_TORCH_THREADS: int | None = None


def oversubscribed_note(threads: int) -> str | None:
    """More torch threads than cores this process may use: each step waits on threads that
    take turns (64 threads on 2 cores trained ten times slower). Said, not refused: a sweep's
    config is checked on the machine that launches it, not on the one that runs the job."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 0
    if not cores or threads <= cores:
        return None
    return (
        f"note: torch runs {threads} threads on the {cores} core(s) this process may use; "
        "each step waits on threads taking turns (trainer.num_threads=0 lets torch choose)"
    )


# glibc's mallopt() parameters and the values cvsweep sets (docs/performance.md, "Host memory").
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit
KEEP_TRIM_THRESHOLD = 256 * 2**20
_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
_kept_freed_memory: bool | None = None


def keep_freed_memory() -> bool:
    """Let glibc keep freed blocks for reuse instead of handing them back to the OS.

    A CPU step allocates its activations afresh (0.1-10 MB each) and frees them at its end.
    glibc hands such blocks back to the OS (as separate mappings, or by trimming the heap
    top), so the next step gets new pages and faults on each one on first touch: up to 4,000
    page faults per step at batch 64-256, up to 40 % of the step on the 2-core VM. Results are
    bit-identical; only where the memory comes from changes. Once per process, on glibc only;
    left alone when the user has set glibc's own malloc variables. Returns whether it is set.
    """
    global _kept_freed_memory
    if _kept_freed_memory is not None:
        return _kept_freed_memory
    _kept_freed_memory = False
    if not sys.platform.startswith("linux") or any(k in os.environ for k in _MALLOC_ENV):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _kept_freed_memory = bool(
        mallopt(_M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD)
        and mallopt(_M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)
    )
    return _kept_freed_memory


def set_deterministic(enabled: bool) -> None:
    """torch's deterministic algorithms, on or off for this job: the jobs of a sweep run one
    after another in one process, and one job's setting must not carry over to the next.
    cuBLAS needs its workspace setting for them.

    Only a change is made: `use_deterministic_algorithms` imports torch._inductor (and with it
    torch._dynamo) to set its flag there too, 1.6 s of CPU on the 2-core VM, which a job that
    trains nothing (a shape report, a refused config) would pay for a setting already in place.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    if torch.are_deterministic_algorithms_enabled() != enabled:
        torch.use_deterministic_algorithms(enabled)


def configure_cudnn(trainer: Any, device: torch.device) -> bool:
    """cuDNN benchmark mode for this run (off by default); returns whether it is on.

    Measured on an H200 (docs/performance.md): timing cuDNN's algorithms made the step only
    2.5 % faster, cost seconds of start-up in the first job, and lets two processes pick
    different (non-deterministic) algorithms for the same run. Deterministic runs never use it.
    """
    on = (
        device.type == "cuda"
        and not trainer.deterministic
        and switch_word(trainer.cudnn_benchmark) == "on"
    )
    torch.backends.cudnn.benchmark = on
    return on


@dataclass(frozen=True)
class SpeedSettings:
    """How the step runs on this device; results differ only by float rounding."""

    channels_last: bool
    bf16: bool
    fused_optimizer: bool
    split_bias_grad: bool


def speed_settings(trainer: Any, device: torch.device) -> SpeedSettings:
    """Resolve the `auto` choices: measured wins on CPU (docs/performance.md), none on CUDA.

    On CUDA the step is already a replayed graph; its eager and graph paths are verified in
    fp32, so the GPU keeps fp32 and the default layout unless asked otherwise.
    """
    cpu = device.type == "cpu"
    layout = switch_word(trainer.channels_last)
    channels_last = layout == "on" or (layout == "auto" and cpu)
    if trainer.precision == "auto":
        bf16 = cpu and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    else:
        bf16 = trainer.precision == "bf16"
    # Conv bias gradients summed in two small steps: the largest item of a captured step on
    # a GPU, and slower that way on CPU, where oneDNN computes them inside its convolution.
    split = switch_word(trainer.split_bias_grad)
    split_bias_grad = split == "on" or (split == "auto" and not cpu)
    # Fused optimizers on both devices: faster, and on CUDA the eager step then updates the
    # weights with the same kernels as the graphed one.
    return SpeedSettings(
        channels_last=channels_last,
        bf16=bf16,
        fused_optimizer=True,
        split_bias_grad=split_bias_grad,
    )


def preload_for_training(requested_device: str) -> None:
    """The first job's one-time work, done early where the process would otherwise wait.

    A sweep's launching process waits about a second for the tracking store before its jobs
    start (docs/performance.md). Everything here would happen in the first job anyway: the
    trainer's modules, torch._dynamo (which every torch.optim `step()` imports on first use:
    1.0 s of CPU on the 2-core VM) and, for a CUDA run, the context, cuDNN and cuBLAS.
    """
    import torch._dynamo  # noqa: F401

    import cvsweep.job  # noqa: F401

    if requested_device in ("auto", "cuda") and torch.cuda.is_available():
        # Only a warm-up (context, cuDNN and cuBLAS loaded by a convolution and a matmul, both
        # ways, on zeros: no random numbers drawn): the job itself reports any real error.
        with contextlib.suppress(Exception):
            x = torch.zeros(2, 1, 8, 8, device="cuda", requires_grad=True)
            w = torch.zeros(4, 1, 3, 3, device="cuda", requires_grad=True)
            y = torch.nn.functional.conv2d(x, w).flatten(1)
            (y @ torch.zeros(y.shape[1], 2, device="cuda")).sum().backward()
            torch.cuda.synchronize()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def cpu_tags(device: torch.device) -> dict[str, str]:
    """The CPU kernels a run on the CPU used: torch picks them by the instruction set it finds
    (AVX2, AVX512, ...), and a kernel for wider vectors adds in another order, so the same run
    gives other last digits on another kind of CPU. `cvsweep rerun` says so when they differ."""
    if device.type != "cpu":
        return {}
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
