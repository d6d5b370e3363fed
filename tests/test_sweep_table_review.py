"""A sweep's table says which rows it reused from an earlier sweep, and `compare --out` never
replaces a sweep's own report with another one."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from .conftest import QUICK, cli_env, run_cvsweep, run_train, store_uri, sweep_parent_id

# The tests share a module-scoped fixture: pytest-xdist runs them all on one worker.
pytestmark = pytest.mark.xdist_group("sweep_table_review")

REPORT_FILES = ("comparison.md", "comparison.csv", "comparison_optimizer.png")


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, data_dir):
    """A 2-job sweep, then a 3-job sweep into the same store that shares its adam job."""
    tmp = tmp_path_factory.mktemp("reuse")
    uri = f"tracking.uri={store_uri(tmp)}"
    first = run_train(["-m", "optimizer=sgd,adam", *QUICK, uri], tmp / "first", data_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_train(
        ["-m", "optimizer=adam,rmsprop,adamw", *QUICK, uri], tmp / "second", data_dir
    )
    assert second.returncode == 0, second.stderr[-3000:]
    return tmp, first, second


def _compare(tmp: Path, data_dir: Path, *args: str):
    return run_cvsweep(
        ["compare", *args, "--tracking-uri", store_uri(tmp)], tmp, cli_env(data_dir), timeout=120
    )


def _rows(report: str) -> dict[str, str]:
    """The run table's label of each run id."""
    table = report.split("## Groups", 1)[0]
    found = (re.match(r"\| (.+?) \| ([0-9a-f]{32}) \| ", line) for line in table.splitlines())
    return {m.group(2): m.group(1) for m in found if m}


def _adam_run(proc) -> str:
    match = re.search(r"skipped: identical to finished run ([0-9a-f]{32})", proc.stdout)
    assert match, proc.stdout[-3000:]
    return match.group(1)


def _sweep_name(tmp: Path, parent: str) -> str:
    from mlflow import MlflowClient

    return MlflowClient(store_uri(tmp)).get_run(parent).info.run_name


def _files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in REPORT_FILES}


@pytest.mark.slow
def test_a_sweep_marks_the_row_it_reused_from_an_earlier_sweep(sweeps):
    from mlflow import MlflowClient

    tmp, first, second = sweeps
    old, new, adam = sweep_parent_id(first), sweep_parent_id(second), _adam_run(second)
    assert second.stdout.count("skipped: identical to finished run") == 1
    # The printed table: the reused row is marked, the two trained now are not.
    rows = _rows(second.stdout)
    assert len(rows) == 3, second.stdout[-3000:]
    assert rows.pop(adam) == "optimizer=adam †"
    assert sorted(rows.values()) == ["optimizer=adamw", "optimizer=rmsprop"]
    note = (
        "† Reused, not trained in this sweep (1 run): a run of the same config had finished "
        "before, so its job was skipped and that run stands in for it: `optimizer=adam` from "
        f"the sweep {_sweep_name(tmp, old)!r} (parent run {old}). "
        "`tracking.skip_finished=false` trains such jobs again."
    )
    assert f"\n\n{note}\n" in second.stdout, second.stdout[-3000:]
    # The groups table counts the reused run in its group's n.
    groups = second.stdout.split("## Groups", 1)[1]
    assert re.search(r"^\| optimizer=adam \| 1 \(1 †\) \| ", groups, re.M), groups
    assert re.search(r"^\| optimizer=rmsprop \| 1 \| ", groups, re.M), groups
    # The report file is what was printed, and so is the copy on the sweep's parent run.
    folder = tmp / "second" / "multirun"
    md = (folder / "comparison.md").read_text()
    assert md in second.stdout
    client = MlflowClient(store_uri(tmp))
    logged = Path(client.download_artifacts(new, "comparison.md", str(tmp / "logged")))
    assert logged.read_text() == md
    with (folder / "comparison.csv").open(newline="") as fh:
        reused = {row["run_id"]: row["reused_from"] for row in csv.DictReader(fh)}
    assert reused.pop(adam) == old and set(reused.values()) == {""}
    # The first sweep trained all its runs: nothing in its report is marked.
    assert "†" not in first.stdout and "Reused" not in first.stdout


@pytest.mark.slow
def test_compare_of_that_sweep_marks_the_same_rows(sweeps, data_dir):
    tmp, _, second = sweeps
    out = tmp / "cmp-second"
    proc = _compare(tmp, data_dir, sweep_parent_id(second), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert _rows(proc.stdout)[_adam_run(second)] == "optimizer=adam †"
    assert (out / "comparison.md").read_text() == (
        tmp / "second" / "multirun" / "comparison.md"
    ).read_text()


@pytest.mark.slow
def test_compare_of_a_sweep_folder_compares_its_parent_run(sweeps, data_dir):
    """The folder a user has at hand after a sweep names its parent run (sweep_runs.json)."""
    tmp, _, second = sweeps
    folder = tmp / "second" / "multirun"
    by_folder = _compare(tmp, data_dir, str(folder), "--out", str(tmp / "cmp-folder"))
    assert by_folder.returncode == 0, by_folder.stderr
    by_id = _compare(tmp, data_dir, sweep_parent_id(second), "--out", str(tmp / "cmp-id"))
    assert by_id.returncode == 0, by_id.stderr
    assert (tmp / "cmp-folder" / "comparison.md").read_text() == (
        tmp / "cmp-id" / "comparison.md"
    ).read_text()
    # A sweep's folder without that file (tracking off, or the file lost): said so.
    untracked = tmp / "untracked-sweep"
    untracked.mkdir()
    shutil.copy(folder / "multirun.yaml", untracked / "multirun.yaml")
    proc = _compare(tmp, data_dir, str(untracked))
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.startswith(
        f"error: {untracked} is a sweep's folder without a readable sweep_runs.json"
    ), proc.stderr
    assert not list(untracked.glob("comparison*"))


@pytest.mark.slow
def test_compare_keeps_another_sweeps_report_in_its_folder(sweeps, data_dir):
    tmp, first, second = sweeps
    folder = tmp / "second" / "multirun"
    before = _files(folder)
    old, new = sweep_parent_id(first), sweep_parent_id(second)
    proc = _compare(tmp, data_dir, old, "--out", str(folder))
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    free = folder / f"comparison-{old}"
    assert proc.stderr == (
        f"error: --out {folder} holds the report of the sweep {_sweep_name(tmp, new)!r} "
        f"(parent run {new}): its comparison.md, comparison.csv and figures would be replaced "
        f"by the comparison of {old}, and the sweep's own files would be gone from that folder "
        "(only the copies logged on its parent run in MLflow would remain). Write this "
        f"comparison to a folder of its own, e.g. --out {free}.\n"
    )
    assert _files(folder) == before
    # The folder it names is free: the comparison goes there, the sweep's files stay.
    there = _compare(tmp, data_dir, old, "--out", str(free))
    assert there.returncode == 0, there.stderr
    assert f"# {_sweep_name(tmp, old)}\n" in (free / "comparison.md").read_text()
    assert _files(folder) == before


@pytest.mark.slow
def test_compare_rewrites_only_its_own_sweeps_whole_report(sweeps, data_dir):
    tmp, first, second = sweeps
    folder = tmp / "second" / "multirun"
    before = _files(folder)
    new = sweep_parent_id(second)
    # The same sweep rebuilt from the store is the report it has: it may be written again.
    again = _compare(tmp, data_dir, new, "--out", str(folder))
    assert again.returncode == 0, again.stderr
    for name in ("comparison.md", "comparison.csv"):
        assert (folder / name).read_bytes() == before[name], name
    # Grouped by a key, it is another report, which would drop the figure per swept key.
    by = _compare(tmp, data_dir, new, "--by", "optimizer", "--out", str(folder))
    assert by.returncode == 2, by.stderr
    assert "would be replaced by this comparison by optimizer" in by.stderr
    assert "Traceback" not in by.stderr and len(by.stderr.splitlines()) == 1
    assert _files(folder) == before


@pytest.mark.slow
def test_compare_keeps_a_sweep_report_the_store_cannot_rebuild(sweeps, data_dir):
    """A job that failed before it made a run is a row of its sweep's report only."""
    tmp, first, _ = sweeps
    broken = tmp / "broken"  # a truncated file: the job fails as it loads, before its run
    shutil.copytree(data_dir / "MNIST", broken / "MNIST")
    labels = broken / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[: labels.stat().st_size // 2])
    roots = f"dataset.root={data_dir},{broken}"
    third = run_train(
        ["-m", *QUICK, roots, f"tracking.uri={store_uri(tmp)}"], tmp / "third", data_dir
    )
    assert third.returncode == 1, third.stderr[-3000:]
    folder = tmp / "third" / "multirun"
    before = (folder / "comparison.md").read_bytes()
    proc = _compare(tmp, data_dir, sweep_parent_id(third), "--out", str(folder))
    assert proc.returncode == 2, proc.stderr
    assert (
        "would be replaced by a report rebuilt from the store, without the row of its job that "
        "failed before it made a run"
    ) in proc.stderr
    assert (folder / "comparison.md").read_bytes() == before


def test_compare_of_a_sweep_names_a_reused_run_as_its_own_report_does(tmp_path, data_dir):
    """A run made outside any sweep (`optimizer=adam` left at its default) stands in for the
    sweep's adam job: `compare <parent>` wrote the CSV row under the run's own name, without
    `optimizer=adam`, and so replaced the sweep's CSV when rebuilding it in its folder."""
    uri = f"tracking.uri={store_uri(tmp_path)}"
    single = run_train([*QUICK, uri], tmp_path / "single", data_dir)
    assert single.returncode == 0, single.stderr[-3000:]
    sweep = run_train(["-m", "optimizer=sgd,adam", *QUICK, uri], tmp_path / "sweep", data_dir)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert sweep.stdout.count("skipped: identical to finished run") == 1
    folder = tmp_path / "sweep" / "multirun"
    proc = _compare(tmp_path, data_dir, sweep_parent_id(sweep), "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    for name in ("comparison.md", "comparison.csv"):
        assert (tmp_path / "cmp" / name).read_text() == (folder / name).read_text(), name
    with (folder / "comparison.csv").open(newline="") as fh:
        names = sorted(row["run"] for row in csv.DictReader(fh))
    assert names == [f"optimizer={o} " + " ".join(QUICK) for o in ("adam", "sgd")]
    # One job's folder, or the folder that holds the sweep's: said what they are.
    job = folder / "0"
    rid = json.loads((job / "job_result.json").read_text())["run_id"]
    said = _compare(tmp_path, data_dir, str(job))
    assert said.returncode == 2 and said.stderr.startswith(
        f"error: {job} is one job's folder, of run {rid}: compare takes a sweep's folder"
    ), said.stderr
    said = _compare(tmp_path, data_dir, str(tmp_path / "sweep"))
    assert said.returncode == 2 and said.stderr.startswith(
        f"error: {tmp_path / 'sweep'} holds 1 sweep folder(s), not one sweep: compare one of "
        f"them, e.g. `cvsweep compare {folder}` (the latest)."
    ), said.stderr
