"""Atomic writes of weights and full training state.

A checkpoint is written to a temporary file in the same folder and renamed over the old one, so
a crash or a kill mid-write leaves the previous good file in place, never half of a new one.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import random
import re
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch


class FileWriteError(OSError):
    """A checkpoint or model file could not be written (disk full, quota, permissions): the
    machine's problem, not the code's, so it is said in one line with the file and the cause."""


def _os_cause(exc: BaseException) -> OSError | None:
    """The OSError behind exc: torch's writer reports a full disk as a RuntimeError
    ("unexpected pos ...") raised while handling the OSError that says why."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@functools.cache
def _umask() -> int:
    """The process's umask, read without setting it where Linux shows it (setting it to read
    it would briefly change it for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_save(obj: Any, path: Path) -> Path:
    """torch.save to a temporary file that then replaces `path`: a crash leaves the old file.

    The file gets the mode any other file the job writes gets (0644 under the usual umask),
    not mkstemp's 0600, so that others sharing a sweep folder can load the model.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise FileWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            with contextlib.suppress(OSError):  # a filesystem without modes (vfat) refuses it
                os.fchmod(fh.fileno(), 0o666 & ~_umask())
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        cause = _os_cause(exc) if isinstance(exc, OSError | RuntimeError) else None
        if cause is not None:
            why = cause.strerror or str(cause)
            raise FileWriteError(
                f"cannot write {path}: {why[:1].lower()}{why[1:]} (the previous file, if any, "
                "is kept)"
            ) from exc
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


ANSI_CODES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
ZIP_HEADER = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6 is a zip archive
PICKLE_HEADER = b"\x80"  # the legacy format (and plain pickles) start with a protocol byte
UNREADABLE = (errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOENT)


def _file_kind(path: Path) -> str:
    """What a file is, by its first bytes: "torch" (a zip archive laid out as torch.save
    writes it), "damaged torch" (a zip header, but no archive to read), "zip" (another
    archive), "pickle" (the legacy format, or a plain pickle), or "other"."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(ZIP_HEADER))
    except OSError:
        return "other"
    if head.startswith(PICKLE_HEADER):
        return "pickle"
    if head != ZIP_HEADER:
        return "other"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "damaged torch"
    return "torch" if any(name.endswith("/data.pkl") for name in names) else "zip"


def damaged_member(path: Path) -> str | None:
    """The first member of a torch.save archive whose bytes fail their CRC-32, else None.

    torch.load reads tensor data without checking it, so a file changed after it was written
    (a flipped bit on disk, a partial copy over it) loads as other weights without a word.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None  # no readable archive: torch.load's refusal says what the file is


def damaged_problem(member: str) -> str:
    """What load_problem says for a file damaged_member found changed."""
    return (
        f"it is a damaged PyTorch file: {member} in it fails its checksum (changed since it "
        "was written)"
    )


def load_problem(exc: BaseException, path: Path | None = None, expected: str = "") -> str:
    """Why torch.load refused a file, short and true, for a message that names the file.

    Never torch's own text for a weights-only refusal: a paragraph of advice (with terminal
    colour codes) to load the file again with weights_only=False, which would run any code a
    pickle holds and is wrong for a damaged file anyway. `expected` names what the file should
    have been ("a model.pth"), for the reason given when it is no PyTorch file at all.
    """
    if isinstance(exc, OSError) and exc.errno in UNREADABLE and exc.strerror:
        return exc.strerror.lower()  # "permission denied": the file is not the problem
    text = ANSI_CODES.sub("", str(exc))
    unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if unsafe:
        return (
            f"it holds Python objects besides tensors ({unsafe[1]}), which are not loaded "
            "because unpickling them could run code"
        )
    instead = f", or not {expected}" if expected else ", or another kind of file"
    kind = _file_kind(path) if path is not None else None
    if kind == "other":
        return f"it is not a PyTorch file: damaged{instead}"
    if kind == "zip":
        return "it is a zip archive but not a PyTorch file"
    if kind == "damaged torch":
        return "it is a damaged PyTorch file: truncated, or changed since it was written"
    if kind == "pickle":
        other = f"a pickle that is not {expected}" if expected else "another pickle"
        return f"it is a damaged PyTorch file, or {other}"
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    if "weights_only" in first or "Weights only load failed" in first:
        return "it is a damaged PyTorch file: its contents cannot be read as saved tensors"
    return first if len(first) <= 200 else first[:197] + "..."


def cannot_load(exc: BaseException, path: Path | None = None) -> str:
    """Why torch.load refused a file, in one line (see load_problem)."""
    return f"torch cannot load it: {load_problem(exc, path)}"


@contextlib.contextmanager
def quiet_load() -> Iterator[None]:
    """No torch warnings while a file is tried (about a pickle's protocol, say): whether it
    loads or not, the caller says what matters in its own words."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def read_training_state(path: Path, map_location: Any = "cpu") -> dict[str, Any] | None:
    """A cvsweep training checkpoint read without unpickling code: its tensors, numbers and
    the numpy arrays of its random state; None for a file that is no such checkpoint."""
    allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32))]
    # numpy 2 pickles its arrays from numpy._core, numpy 1 from numpy.core: a checkpoint from
    # either may be read under the other.
    for module in ("_core", "core"):
        multiarray = getattr(getattr(np, module, None), "multiarray", None)
        if multiarray is not None and hasattr(multiarray, "_reconstruct"):
            allowed.append(multiarray._reconstruct)
    try:
        with torch.serialization.safe_globals(allowed), quiet_load():
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:
        return None
    if not isinstance(state, dict) or not {"model", "step", "history"} <= state.keys():
        return None
    return state if isinstance(state["model"], dict) else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Our own checkpoints hold numpy/python RNG tuples, so they need full unpickling.

    Raises ValueError with a one-line reason for a file that is not one of them (damaged, or
    another file put in its place, such as a model.pth), so that a caller can say so and train
    without it instead of failing on a pickle error spread over several lines.
    """
    member = damaged_member(path)
    if member is not None:
        raise ValueError(f"torch cannot load it: {damaged_problem(member)}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except OSError:
        raise
    except Exception as exc:
        raise ValueError(cannot_load(exc, path)) from None
    if not isinstance(state, dict) or "step" not in state or "history" not in state:
        raise ValueError("it is not a cvsweep training state (no step and history)")
    return state
