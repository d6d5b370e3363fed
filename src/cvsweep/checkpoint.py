"""Atomic writes of weights and full training state.

A checkpoint is written to a temporary file in the same folder and renamed over the old one, so
a crash or a kill mid-write leaves the previous good file in place, never half of a new one.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pth"


def atomic_save(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def rng_state(data_generator: torch.Generator) -> dict[str, Any]:
    """Every random state a run draws from, so a resumed run draws the same numbers."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "data": data_generator.get_state(),
    }
    # Only a process that has used CUDA has CUDA random state to keep. Asking is_available()
    # instead made a CPU run on a GPU machine initialize CUDA just to read that state.
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], data_generator: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    data_generator.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cannot_load(exc: BaseException) -> str:
    """Why torch.load refused a file, in one line: the first of its message (a weights-only
    refusal goes on for a paragraph of advice that does not apply to a damaged file)."""
    lines = [" ".join(line.split()) for line in str(exc).splitlines() if line.strip()]
    return f"torch cannot load it: {lines[0] if lines else type(exc).__name__}"


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Our own checkpoints hold numpy/python RNG tuples, so they need full unpickling.

    Raises ValueError with a one-line reason for a file that is not one of them (damaged, or
    another file put in its place, such as a model.pth), so that a caller can say so and train
    without it instead of failing on a pickle error spread over several lines.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except OSError:
        raise
    except Exception as exc:
        raise ValueError(cannot_load(exc)) from None
    if not isinstance(state, dict) or "step" not in state or "history" not in state:
        raise ValueError("it is not a cvsweep training state (no step and history)")
    return state
