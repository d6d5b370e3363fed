"""The data folder as users get it wrong, and the presets' quick looks, through the real CLI.

Every data root here is built in a temporary folder from links to (or copies of) the real
files; commands that could fetch run offline: proxies that refuse and `npm` / `apt-get` that
fail, so nothing here reaches the network.
"""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import pytest

from .conftest import QUICK, cli_env, run_cvsweep, run_train

STEMS = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]
SMALL = "t10k-labels-idx1-ubyte"  # cheap to copy, unpack and damage
UNTRACKED = [*QUICK, "tracking.enabled=false"]


def linked_root(data_dir: Path, root: Path, stems: list[str] = STEMS) -> Path:
    """A data root whose MNIST/raw links to the real .gz files; returns that raw folder."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in stems:
        (raw / f"{stem}.gz").symlink_to(data_dir / "MNIST" / "raw" / f"{stem}.gz")
    return raw


def offline_env(tmp: Path, data: Path) -> dict[str, str]:
    """The CLI's environment with every fetch source failing at once, as on a machine offline."""
    tools = tmp / "offline-bin"
    tools.mkdir(exist_ok=True)
    for tool in ("npm", "apt-get"):
        script = tools / tool
        script.write_text(f"#!/bin/sh\necho '{tool}: network is unreachable' >&2\nexit 1\n")
        script.chmod(0o755)
    env = cli_env(data)
    for key in ("no_proxy", "NO_PROXY"):
        env.pop(key, None)
    refused = "http://127.0.0.1:9"
    env.update(http_proxy=refused, https_proxy=refused, HTTP_PROXY=refused, HTTPS_PROXY=refused)
    env["PATH"] = f"{tools}:{env.get('PATH', '')}"
    return env


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize("too_deep", ["MNIST", "MNIST/raw"])
def test_a_root_one_level_too_deep_gives_the_root_meant(tmp_path, data_dir, too_deep):
    """dataset.root at the dataset's folder or its raw/ would get MNIST/raw made inside it and
    a second download there; the run says which value was meant instead."""
    root = tmp_path / "data"
    linked_root(data_dir, root)
    wrong = root / too_deep
    proc = run_train(
        [*UNTRACKED, f"dataset.root={wrong}"],
        tmp_path,
        data_dir,
        env=offline_env(tmp_path, data_dir),
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_error_line(proc.stderr)
    assert line.startswith(f"error: Invalid config value dataset.root={wrong}: ")
    assert line.endswith(f"use dataset.root={root}.")
    assert "fetching" not in proc.stdout
    assert not (wrong / "MNIST").exists()


def test_data_fetch_into_a_raw_folder_gives_the_root_meant(tmp_path, data_dir):
    root = tmp_path / "data"
    raw = linked_root(data_dir, root)
    env = offline_env(tmp_path, data_dir)
    proc = run_cvsweep(["data", "fetch", "mnist", "--root", str(raw)], tmp_path, env)
    assert proc.returncode == 2, proc.stderr
    assert one_error_line(proc.stderr).endswith(f"use --root={root}.")
    assert not (raw / "MNIST").exists()
    # Both datasets: the root is said to be wrong once, naming the folder that is there.
    both = run_cvsweep(["data", "fetch", "--root", str(raw.parent)], tmp_path, env)
    assert both.returncode == 2, both.stderr
    line = one_error_line(both.stderr)
    assert "which holds MNIST/raw/" in line and line.endswith(f"use --root={root}.")


def test_files_lying_bare_in_the_root_are_said_to_belong_in_its_raw_folder(tmp_path, data_dir):
    root = tmp_path / "downloads"
    root.mkdir()
    for stem in STEMS:
        (root / f"{stem}.gz").symlink_to(data_dir / "MNIST" / "raw" / f"{stem}.gz")
    env = offline_env(tmp_path, data_dir)
    proc = run_train([*UNTRACKED, f"dataset.root={root}"], tmp_path, data_dir, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"move them to {root / 'MNIST' / 'raw'}" in one_error_line(proc.stderr)
    assert not (root / "MNIST").exists()


@pytest.mark.parametrize(
    ("override", "data_env", "said"),
    [
        (["dataset.root=''"], None, "it must name the data folder"),
        ([], "", "it comes from CVSWEEP_DATA, which is set but empty"),
    ],
)
def test_an_empty_data_root_is_a_config_error(tmp_path, data_dir, override, data_env, said):
    """An empty root would fetch into the launch folder, whichever it is."""
    env = offline_env(tmp_path, data_dir)
    if data_env is not None:
        env["CVSWEEP_DATA"] = data_env
    proc = run_train([*UNTRACKED, *override], tmp_path, data_dir, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_error_line(proc.stderr)
    assert line.startswith(f"error: Invalid config value dataset.root='': {said}")
    assert not (tmp_path / "MNIST").exists() and "fetching" not in proc.stdout


def test_an_unexpanded_tilde_is_never_a_folder_to_fetch_into(tmp_path, data_dir):
    """`export CVSWEEP_DATA="~/data"` (quoted) reaches cvsweep as it is: a fetch would make a
    folder named ~ in the launch folder and download into it."""
    env = offline_env(tmp_path, data_dir)
    env["CVSWEEP_DATA"] = "~/cvsweep-data-that-is-not-there"
    expanded = Path(env["CVSWEEP_DATA"]).expanduser()
    proc = run_train(UNTRACKED, tmp_path, data_dir, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_error_line(proc.stderr)
    assert "(the value of CVSWEEP_DATA): no such folder" in line
    assert line.endswith(f"A ~ is not expanded in a data root: write {expanded}.")
    fetch = run_cvsweep(["data", "fetch", "mnist"], tmp_path, env)
    assert fetch.returncode == 2, fetch.stderr  # a root to write out, as in train.py
    assert one_error_line(fetch.stderr).endswith(f"write {expanded}.")
    assert not (tmp_path / "~").exists() and not expanded.exists()


def test_the_other_datasets_file_is_named_as_such(tmp_path, data_dir):
    """Fashion-MNIST's files have MNIST's names: one saved in the wrong folder is not 'corrupt'."""
    root = tmp_path / "data"
    raw = linked_root(data_dir, root, [s for s in STEMS if s != SMALL])
    shutil.copyfile(data_dir / "FashionMNIST" / "raw" / f"{SMALL}.gz", raw / f"{SMALL}.gz")
    env = offline_env(tmp_path, data_dir)
    proc = run_train([*UNTRACKED, f"dataset.root={root}"], tmp_path, data_dir, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_error_line(proc.stderr)
    assert f"is not mnist's {SMALL}: its bytes are fashion_mnist's {SMALL}" in line
    assert f"It belongs at {root / 'FashionMNIST' / 'raw' / SMALL}.gz" in line
    assert "corrupt" not in line


def test_files_read_by_their_content_not_their_suffix(tmp_path, data_dir):
    """A .gz a browser unpacked under its old name, and a gzip file renamed without .gz, train."""
    root = tmp_path / "data"
    raw = linked_root(data_dir, root, STEMS[:2])
    shipped = data_dir / "MNIST" / "raw"
    (raw / f"{SMALL}.gz").write_bytes(gzip.decompress((shipped / f"{SMALL}.gz").read_bytes()))
    shutil.copyfile(shipped / f"{STEMS[2]}.gz", raw / STEMS[2])
    env = offline_env(tmp_path, data_dir)
    proc = run_train([*UNTRACKED, f"dataset.root={root}"], tmp_path, data_dir, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fetching" not in proc.stdout
    assert re.search(r"final test accuracy: [\d.]+%", proc.stdout)


def test_fetch_removes_a_bad_raw_file_that_hides_a_good_gz(tmp_path, data_dir):
    """An interrupted `gunzip -k` leaves a short raw file beside the good .gz: the data is
    there, so fetch needs no source (all of them fail here) to repair it."""
    root = tmp_path / "data"
    raw = linked_root(data_dir, root)
    payload = gzip.decompress((raw / f"{SMALL}.gz").read_bytes())
    (raw / SMALL).write_bytes(payload[: len(payload) // 2])
    env = offline_env(tmp_path, data_dir)
    proc = run_cvsweep(["data", "fetch", "mnist", "--root", str(root)], tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert f"{raw / SMALL} fails verification; removed it: {SMALL}.gz beside it verifies" in (
        proc.stdout
    )
    assert not (raw / SMALL).exists()
    assert f"mnist: all four files present and verified in {raw}" in proc.stdout


def test_a_failed_fetch_names_only_the_missing_file_and_the_root_to_retry(tmp_path, data_dir):
    root = tmp_path / "data"
    raw = linked_root(data_dir, root, [s for s in STEMS if s != SMALL])
    env = offline_env(tmp_path, data_dir)
    proc = run_cvsweep(["data", "fetch", "mnist", "--root", str(root)], tmp_path, env)
    assert proc.returncode == 1, proc.stderr
    said = proc.stderr
    assert said.startswith(f"error: Could not fetch mnist: no verified copy of {SMALL} in {raw}.")
    assert "npm: network is unreachable" in said
    assert f"put these files into {raw}" in said
    assert f"  {SMALL}  (or {SMALL}.gz)" in said
    assert "train-images-idx3-ubyte  (or" not in said  # present: not asked for again
    assert f"run `cvsweep data fetch mnist --root {root}` again" in said
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{s}.gz" for s in STEMS[:3])


def test_an_unwritable_root_names_the_files_it_lacks(tmp_path, data_dir):
    # Tests run as root, where chmod cannot make a folder unwritable; a path under a regular
    # file cannot be created by anyone.
    (tmp_path / "file").write_text("not a folder")
    root = tmp_path / "file" / "data"
    env = offline_env(tmp_path, data_dir)
    proc = run_cvsweep(["data", "fetch", "mnist", "--root", str(root)], tmp_path, env)
    assert proc.returncode == 1, proc.stderr
    line = one_error_line(proc.stderr)
    assert line.startswith(f"error: {root / 'MNIST' / 'raw'} lacks {', '.join(STEMS)} (each raw ")
    assert f"the data root {root} is not writable" in line
    assert "Traceback" not in proc.stderr


def test_the_two_phase_quick_look_trains_each_phase_as_documented(tmp_path, data_dir):
    """docs/results.md's quick look for experiment=fashion_two_phase: both phases, in order,
    with their own optimizer, and the epoch lines numbered over the whole run."""
    args = [
        "experiment=fashion_two_phase",
        "schedule.phases.0.epochs=1",
        "schedule.phases.1.epochs=1",
        "seed=0",
        *UNTRACKED,
    ]
    proc = run_train(args, tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "phase 1/2: epoch 1 of 2, sgd lr=0.0001" in out and "momentum=0.9" in out
    assert "phase 2/2: epoch 2 of 2, adam lr=0.0001" in out
    assert out.index("phase 1/2") < out.index("epoch   1/2") < out.index("phase 2/2")
    assert out.index("phase 2/2") < out.index("epoch   2/2")
    assert "on fashion_mnist (512 train / 1000 test images)" in out
    assert "optimizer sgd then adam" in out


def test_target99_prints_train_test_acc_and_lr_at_each_log_point(tmp_path, data_dir):
    """The question behind experiment=target99: train and test accuracy and the lr every
    log_every mini-batches, and model.pth saved."""
    quick = [a for a in UNTRACKED if not a.startswith("trainer.log_every=")]
    args = ["experiment=target99", "seed=0", "trainer.log_every=2", *quick]
    proc = run_train(args, tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = re.compile(
        r"^epoch +1/1 +batch +(\d+)/4 +step +(\d+) \| train loss [\d.]+ acc +[\d.]+% \| "
        r"test loss [\d.]+ acc +[\d.]+% \| lr \d\.\d{3}e[-+]\d\d$",
        re.M,
    )
    assert [int(m.group(2)) for m in line.finditer(proc.stdout)] == [2, 4]
    model = re.search(r"^model: (\S+)$", proc.stdout, re.M)
    assert model and Path(model.group(1)).name == "model.pth" and Path(model.group(1)).is_file()


def test_a_run_missing_one_file_names_it_before_fetching(tmp_path, data_dir):
    root = tmp_path / "data"
    raw = linked_root(data_dir, root, [s for s in STEMS if s != SMALL])
    env = offline_env(tmp_path, data_dir)
    proc = run_train([*UNTRACKED, f"dataset.root={root}"], tmp_path, data_dir, env=env)
    assert f"dataset mnist under {root}: lacks {SMALL}; fetching it" in proc.stdout
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"Could not fetch mnist: no verified copy of {SMALL} in {raw}." in proc.stderr


def test_a_shapes_only_run_needs_no_data(tmp_path, data_dir):
    """The shape report is computed on a batch of zeros: with no data anywhere it still prints,
    and nothing is fetched."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = offline_env(tmp_path, data_dir)
    env["CVSWEEP_DATA"] = str(empty)
    proc = run_train(["experiment=shapes", "tracking.enabled=false"], tmp_path, data_dir, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| conv1 | Conv2d+ReLU | (16, 1, 28, 28) | (16, 16, 24, 24) | 416 |" in proc.stdout
    assert "fetching" not in proc.stdout
    assert list(empty.iterdir()) == []
    assert "each job's folder holds its shape report and log" in proc.stdout  # no model


def test_fetch_of_both_datasets_goes_on_past_one_that_fails(tmp_path, data_dir):
    """`cvsweep data fetch` with no dataset named: MNIST that cannot be fetched offline is an
    error, and Fashion-MNIST is still checked (and said verified), each said once."""
    root = tmp_path / "data"
    fashion = root / "FashionMNIST" / "raw"
    fashion.mkdir(parents=True)
    for stem in STEMS:
        (fashion / f"{stem}.gz").symlink_to(data_dir / "FashionMNIST" / "raw" / f"{stem}.gz")
    env = offline_env(tmp_path, data_dir)
    proc = run_cvsweep(["data", "fetch", "--root", str(root)], tmp_path, env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: Could not fetch mnist: ")
    assert proc.stdout.count("verified in") == 1, proc.stdout
    assert f"fashion_mnist: all four files present and verified in {fashion}" in proc.stdout


def test_a_stray_file_in_a_data_root_and_a_tilde_of_no_user_are_no_tracebacks(tmp_path, data_dir):
    """A data root that holds MNIST/raw is one, even with a stray download beside it: fetching
    Fashion-MNIST into it is not refused as "files lying in the root". `~nosuchuser` cannot
    be expanded: the error says to write the full path, not a traceback."""
    root = tmp_path / "data"
    linked_root(data_dir, root)
    (root / f"{SMALL}.gz").symlink_to(data_dir / "MNIST" / "raw" / f"{SMALL}.gz")
    env = offline_env(tmp_path, data_dir)
    proc = run_cvsweep(["data", "fetch", "fashion_mnist", "--root", str(root)], tmp_path, env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: Could not fetch fashion_mnist: "), proc.stderr

    proc = run_cvsweep(["data", "fetch", "mnist", "--root", "~nosuchuser/data"], tmp_path, env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "A ~ is not expanded in a data root: write the full path." in one_error_line(proc.stderr)
