"""Verified MNIST-style data, loaded once per process into tensors on the training device.

The files are read in torchvision's folder layout, their decompressed bytes are checked against
pinned SHA-256 sums, and the parsed arrays are kept in a per-process cache, so that a sweep of
many jobs in one process (or one joblib worker) reads and verifies the files only once. Nothing
is ever written next to the source files: data roots can be read-only.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shlex
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # loaded by the functions that make tensors: checking a root needs no torch
    import torch


class DataError(RuntimeError):
    """A data file that is missing, truncated or corrupt; the message names the file."""


@dataclass(frozen=True)
class DatasetSpec:
    folder: str
    train_count: int
    test_count: int
    sha256: dict[str, str]  # file stem -> sha256 of the decompressed IDX bytes


SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        folder="MNIST",
        train_count=60000,
        test_count=10000,
        sha256={
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        },
    ),
    "fashion_mnist": DatasetSpec(
        folder="FashionMNIST",
        train_count=60000,
        test_count=10000,
        sha256={
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        },
    ),
}

IMAGE_MAGIC = 0x00000803
_GZIP_MAGIC = b"\x1f\x8b"
LABEL_MAGIC = 0x00000801


def raw_dir(root: str | os.PathLike, dataset: str) -> Path:
    return Path(root) / DATASETS[dataset].folder / "raw"


def locate(root: str | os.PathLike, dataset: str, stem: str) -> Path | None:
    """The raw file if present, else its .gz; None when neither exists."""
    base = raw_dir(root, dataset) / stem
    for candidate in (base, base.with_name(stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def missing_files(
    root: str | os.PathLike, dataset: str, splits: Iterable[str] = tuple(SPLIT_FILES)
) -> list[str]:
    return [
        stem
        for split in splits
        for stem in SPLIT_FILES[split]
        if locate(root, dataset, stem) is None
    ]


def is_default_root(root: str | os.PathLike) -> bool:
    """Is `root` the folder `cvsweep data fetch` fills by default ($CVSWEEP_DATA, else data/)?"""
    default = Path(os.environ.get("CVSWEEP_DATA", "data"))
    try:
        return Path(root).resolve() == default.resolve()
    except OSError:
        return False


def fetch_command(root: str | os.PathLike, dataset: str | None = None) -> str:
    """The `cvsweep data fetch` that fixes `root`: a data root other than the default one is
    named in the command."""
    command = "cvsweep data fetch" + (f" {dataset}" if dataset else "")
    return command if is_default_root(root) else f"{command} --root {shlex.quote(str(root))}"


def check_root_to_fetch_into(root: str | os.PathLike, dataset: str) -> None:
    """A run fetches a missing dataset by itself, but only into a folder that exists or is the
    default one: a mistyped dataset.root would otherwise get a new folder and a download."""
    if not str(root).strip():
        raise DataError(_empty_root_message(root, dataset))
    better = misplaced_root_hint(root, dataset)
    if better:
        raise DataError(f"Invalid config value dataset.root={root}: {better}.")
    tilde = tilde_note(root)
    if tilde:  # never fetch into a new folder named ~
        origin = " (the value of CVSWEEP_DATA)" if is_default_root(root) else ""
        raise DataError(
            f"Invalid config value dataset.root={root}{origin}: no such folder, so {dataset} is "
            f"not fetched there. {tilde.rstrip()}"
        )
    if Path(root).is_dir():
        return
    if is_default_root(root):
        env = os.environ.get("CVSWEEP_DATA")
        if not env:
            return  # data/ beside the user: the Quickstart's first run fills it
        # A variable set by hand is mistyped as easily as dataset.root (`/data/mnst`).
        raise DataError(
            f"CVSWEEP_DATA={env} names no folder, so {dataset} is not fetched there. Check the "
            f"path; to download it into that new folder, run `cvsweep data fetch {dataset}` "
            "first (it fills $CVSWEEP_DATA); or unset CVSWEEP_DATA to use data/ here."
        )
    raise DataError(
        f"Invalid config value dataset.root={root}: no such folder, so {dataset} is not "
        f"fetched there. Check the path; to download it into that new folder, run "
        f"`{fetch_command(root, dataset)}` first; leave dataset.root unset for the default data "
        "folder ($CVSWEEP_DATA or data/)."
    )


def refuse_unusable_root(root: str | os.PathLike, dataset: str) -> bool:
    """Stop at a root no run could read or fetch into, before anything is logged; returns
    whether the dataset still has files to fetch there.

    Checked first so that a mistyped dataset.root leaves no new tracking store or sweep parent
    run behind for a run that could never start.
    """
    if not missing_files(root, dataset):
        return False
    check_root_to_fetch_into(root, dataset)
    return True


def tilde_note(root: str | os.PathLike) -> str:
    """zsh, a quoted value or a YAML file leave `~/data` as it is, and nothing here expands
    it: a folder literally named ~ would be searched, and a fetch would create one."""
    if not str(root).startswith("~") or Path(root).is_dir():
        return ""
    expanded = os.path.expanduser(str(root))  # ~user of no such user stays as it is
    if expanded.startswith("~"):
        return "A ~ is not expanded in a data root: write the full path. "
    return f"A ~ is not expanded in a data root: write {expanded}. "


def _empty_root_message(root: str | os.PathLike, dataset: str) -> str:
    """An empty root would fetch into whatever folder the command runs in; say where the empty
    value came from: the command line, or a CVSWEEP_DATA that is set but empty."""
    holds = f"the folder that holds {DATASETS[dataset].folder}/raw/"
    env = os.environ.get("CVSWEEP_DATA")
    if env is not None and not env.strip():
        return (
            f"Invalid config value dataset.root={str(root)!r}: it comes from CVSWEEP_DATA, which "
            f"is set but empty; set it to the data folder ({holds}) or unset it for data/."
        )
    return (
        f"Invalid config value dataset.root={str(root)!r}: it must name the data folder "
        f"({holds}); leave dataset.root unset for the default data folder ($CVSWEEP_DATA or "
        "data/)."
    )


def _holds_data_files(folder: Path) -> bool:
    """Does folder hold any of the IDX files (raw or .gz) of either dataset, by name?"""
    stems = [stem for files in SPLIT_FILES.values() for stem in files]
    return any((folder / name).is_file() for stem in stems for name in (stem, stem + ".gz"))


def misread_root(root: str | os.PathLike, dataset: str, option: str, shown: str = "") -> str | None:
    """Why a data root given as `option` (`--root`) cannot be read as one: a dataset's own
    folder or its raw/ (a level too deep), or a ~ that nothing expanded; None where it may be
    one. `shown` goes before the root in the message (`--data-root `)."""
    hint = misplaced_root_hint(root, dataset, option)
    if hint:
        return f"{shown}{root} is not a data root: {hint}."
    tilde = tilde_note(root)
    if tilde:
        return f"No folder {shown}{root}, and none is made: {tilde.rstrip()}"
    return None


def misplaced_root_hint(root: str | os.PathLike, dataset: str, key: str = "dataset.root") -> str:
    """Why `root` is not a data root, when it is one level too deep; "" when it looks right.

    Pointing the root at <root>/MNIST/raw, at <root>/MNIST or at a folder holding the files
    themselves is the usual slip; without this check the run would create <that>/MNIST/raw
    and download a second copy next to the files the user meant.
    """
    path = Path(root)
    want = DATASETS[dataset].folder
    if any((path / spec.folder / "raw").is_dir() for spec in DATASETS.values()):
        return ""  # a data root already (a stray file in it is not the user's slip)
    if _holds_data_files(path):
        if path.name == "raw" and path.parent.name in {s.folder for s in DATASETS.values()}:
            return (
                f"that is a dataset's raw/ folder, but {key} is the folder above "
                f"{path.parent.name}/raw/; use {key}={path.parent.parent}"
            )
        return (
            f"the data files lie directly in it, but they are read from {want}/raw/ inside "
            f"{key}: move them to {path / want / 'raw'} ({key} stays {root})"
        )
    if _holds_data_files(path / "raw"):
        return (
            f"that is a dataset's folder ({path.name}/raw/ holds data files), but {key} is the "
            f"folder above it, which holds {path.name}/raw/; use {key}={path.parent}"
        )
    return ""


def _fetch_for(path: Path) -> str:
    """The fetch command for a data file at <root>/<dataset folder>/raw/<file>."""
    folder = path.parent.parent
    for name, spec in DATASETS.items():
        if path.parent.name == "raw" and folder.name == spec.folder:
            return fetch_command(folder.parent, name)
    return "cvsweep data fetch"


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """Decompressed bytes of one IDX file whose hash matches the pinned one."""
    try:
        payload = _decompressed(path.read_bytes())
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DataError(
            f"Data file {path} cannot be read ({type(exc).__name__}: {exc}); it is truncated "
            f"or corrupt. Delete it and run `{_fetch_for(path)}`, or copy a good file in its "
            "place."
        ) from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != expected_sha256:
        raise DataError(
            _wrong_file_message(path, digest, expected_sha256)
            or f"Data file {path} is corrupt: the SHA-256 of its decompressed bytes is {digest}, "
            f"expected {expected_sha256}. Delete it and run `{_fetch_for(path)}`, or copy a "
            "good file in its place."
        )
    return payload


def _decompressed(blob: bytes) -> bytes:
    """The IDX bytes of a file, gzip or not by its content rather than its name.

    Browsers often unpack a downloaded `.gz` but keep the name, and a file may be renamed by
    hand; the pinned hash, not the suffix, decides whether the bytes are good.
    """
    return gzip.decompress(blob) if blob[:2] == _GZIP_MAGIC else blob


def _known_file(sha256: str) -> tuple[str, str] | None:
    """(dataset, file stem) whose pinned hash this is, if any."""
    for name, spec in DATASETS.items():
        for stem, pinned in spec.sha256.items():
            if pinned == sha256:
                return name, stem
    return None


def _wrong_file_message(path: Path, digest: str, expected_sha256: str) -> str:
    """Name the good file that sits in the wrong place, "" when the bytes are no known file.

    MNIST and Fashion-MNIST use the same four file names, so a download saved into the other
    dataset's folder looks "corrupt"; saying whose file it is tells the user what to move.
    """
    found, meant = _known_file(digest), _known_file(expected_sha256)
    if found is None or meant is None:
        return ""
    gz = ".gz" if path.suffix == ".gz" else ""
    belongs = raw_dir(path.parent.parent.parent, found[0]) / (found[1] + gz)
    alike = " (the two datasets name their files alike)" if found[0] != meant[0] else ""
    return (
        f"Data file {path} is not {meant[0]}'s {meant[1]}: its bytes are {found[0]}'s "
        f"{found[1]}{alike}. It belongs at {belongs}; put {meant[0]}'s own {meant[1]} in its "
        f"place (`{_fetch_for(path)}` fetches it)."
    )


def parse_idx(payload: bytes, path: Path, magic: int, count: int) -> np.ndarray:
    """IDX bytes -> uint8 array, checking the header even though the hash already matched.

    The hash proves integrity; the header checks make errors readable if pinned hashes are
    ever changed for a dataset with another shape.
    """
    ndim = 3 if magic == IMAGE_MAGIC else 1
    header_len = 4 + 4 * ndim
    if len(payload) < header_len:
        raise DataError(f"Data file {path} is truncated: {len(payload)} bytes, no full header.")
    found_magic = int.from_bytes(payload[:4], "big")
    if found_magic != magic:
        raise DataError(
            f"Data file {path} has magic number {found_magic:#010x}, expected {magic:#010x} "
            "(wrong file or corrupt header)."
        )
    dims = [int.from_bytes(payload[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if dims[0] != count:
        raise DataError(f"Data file {path} holds {dims[0]} items, expected {count}.")
    expected = header_len + int(np.prod(dims))
    if len(payload) != expected:
        raise DataError(
            f"Data file {path} has {len(payload)} bytes, expected {expected} for shape {dims}."
        )
    return np.frombuffer(payload, dtype=np.uint8, offset=header_len).reshape(dims)


@dataclass
class RawSplit:
    images: torch.Tensor  # uint8 (N, 28, 28)
    labels: torch.Tensor  # int64 (N,)


# (root, dataset) -> the splits read so far
_RAW_CACHE: dict[tuple[str, str], dict[str, RawSplit]] = {}


def load_raw(
    root: str | os.PathLike, dataset: str, splits: Iterable[str] = tuple(SPLIT_FILES)
) -> dict[str, RawSplit]:
    """The splits asked for (both by default) as uint8/int64 CPU tensors, verified; cached per
    process. Only their files need to be there: scoring a model reads the test files alone."""
    if dataset not in DATASETS:
        raise DataError(f"Unknown dataset {dataset!r}; known: {', '.join(DATASETS)}.")
    splits = list(splits)
    key = (str(Path(root).resolve()), dataset)
    cached = _RAW_CACHE.get(key, {})
    if all(split in cached for split in splits):
        return {split: cached[split] for split in splits}
    spec = DATASETS[dataset]
    missing = missing_files(root, dataset, splits)
    hint = misplaced_root_hint(root, dataset) if missing else ""
    if hint:
        raise DataError(f"Dataset {dataset} is not under {root}: {hint}.")
    if missing:
        raise DataError(
            f"Dataset {dataset} is incomplete in {raw_dir(root, dataset)}: missing "
            f"{', '.join(missing)} (raw or .gz). Run `{fetch_command(root, dataset)}` or place "
            "the files there by hand (see README, 'Data')."
        )
    import torch

    loaded = dict(cached)
    for split in splits:
        if split in loaded:
            continue
        img_stem, lbl_stem = SPLIT_FILES[split]
        count = spec.train_count if split == "train" else spec.test_count
        img_path = locate(root, dataset, img_stem)
        lbl_path = locate(root, dataset, lbl_stem)
        if img_path is None or lbl_path is None:  # removed between the check and the read
            raise DataError(f"Dataset {dataset} files vanished from {raw_dir(root, dataset)}.")
        images = parse_idx(
            read_verified(img_path, spec.sha256[img_stem]), img_path, IMAGE_MAGIC, count
        )
        labels = parse_idx(
            read_verified(lbl_path, spec.sha256[lbl_stem]), lbl_path, LABEL_MAGIC, count
        )
        loaded[split] = RawSplit(
            images=torch.from_numpy(images.copy()),
            labels=torch.from_numpy(labels.astype(np.int64)),
        )
    _RAW_CACHE[key] = loaded
    return {split: loaded[split] for split in splits}


@dataclass
class DeviceData:
    """Normalized float images and labels on the training device, ready to index per batch."""

    train_x: torch.Tensor  # float32 (N, 1, 28, 28)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    fill: float  # the normalized value of a black pixel: what rotation pads with


_DEVICE_CACHE: dict[tuple[Any, ...], DeviceData] = {}


def cached_device_data(
    root: str | os.PathLike,
    dataset: str,
    mean: float,
    std: float,
    device: torch.device,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> DeviceData:
    """load_raw + to_device, kept for the next job of a sweep that runs in this process.

    Training only ever reads these tensors (batches are gathered copies), so jobs can share
    them. One entry: a sweep over datasets replaces it rather than holding every dataset.
    """
    key = (str(Path(root).resolve()), dataset, mean, std, str(device), train_limit, test_limit)
    if key not in _DEVICE_CACHE:
        _DEVICE_CACHE.clear()
        raw = load_raw(root, dataset)
        _DEVICE_CACHE[key] = to_device(raw, mean, std, device, train_limit, test_limit)
    return _DEVICE_CACHE[key]


def to_device(
    raw: dict[str, RawSplit],
    mean: float,
    std: float,
    device: torch.device,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> DeviceData:
    """Normalize once, up front, so the hot loop only indexes tensors."""
    import torch

    def prep(images: torch.Tensor) -> torch.Tensor:
        x = images.to(device=device, dtype=torch.float32).div_(255.0)
        return x.sub_(mean).div_(std).unsqueeze(1).contiguous()

    test = raw["test"]
    train = raw.get("train")
    if train is None:  # scoring only (train_limit=0): the train files need not be there
        train = RawSplit(images=test.images[:0], labels=test.labels[:0])
    n = len(train.labels) if train_limit is None else min(train_limit, len(train.labels))
    m = len(test.labels) if test_limit is None else min(test_limit, len(test.labels))
    return DeviceData(
        train_x=prep(train.images[:n]),
        train_y=train.labels[:n].to(device),
        test_x=prep(test.images[:m]),
        test_y=test.labels[:m].to(device),
        fill=(0.0 - mean) / std,
    )
