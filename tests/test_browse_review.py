"""Browsing results: a sweep's report and `cvsweep compare` say what the store holds, for
sweeps whose jobs failed, sweeps still running, and targets a person easily gets wrong."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from .conftest import QUICK, cli_env, run_cvsweep, run_train, store_uri, sweep_parent_id

# The tests share a module-scoped fixture: pytest-xdist runs them all on one worker.
pytestmark = pytest.mark.xdist_group("browse_review")


@pytest.fixture(scope="module")
def store(tmp_path_factory, data_dir) -> dict[str, object]:
    """One store with: a finished sweep over the dataset, a sweep whose jobs all failed after
    logging test accuracy, and a sweep whose one job failed before it had a run."""
    tmp = tmp_path_factory.mktemp("browse")
    uri = f"tracking.uri={store_uri(tmp)}"
    datasets = run_train(["-m", *QUICK, "dataset=mnist,fashion_mnist", uri], tmp / "a", data_dir)
    assert datasets.returncode == 0, datasets.stderr[-2000:]
    faulty = ["-m", *QUICK, "optimizer=sgd,adam", "trainer.fault_at_step=6", uri]
    failed = run_train(faulty, tmp / "b", data_dir)
    assert failed.returncode == 1, failed.stderr[-2000:]
    seeds = run_train(["-m", *QUICK, "seed=0,1", uri], tmp / "d", data_dir)
    assert seeds.returncode == 0, seeds.stderr[-2000:]
    broken = tmp / "broken"  # a truncated file: each job fails as it loads, before its run
    shutil.copytree(data_dir / "MNIST", broken / "MNIST")
    labels = broken / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[: labels.stat().st_size // 2])
    no_data = run_train(["-m", *QUICK, f"dataset.root={broken}", uri], tmp / "c", data_dir)
    assert no_data.returncode == 1, no_data.stderr[-2000:]
    return {
        "tmp": tmp,
        "datasets": datasets,
        "failed": failed,
        "no_data": no_data,
        "seeds": seeds,
    }


def _compare(tmp: Path, data_dir: Path, *args: str):
    return run_cvsweep(
        ["compare", *args, "--tracking-uri", store_uri(tmp), "--out", str(tmp / "cmp")],
        tmp,
        cli_env(data_dir),
        timeout=120,
    )


def _client(tmp: Path):
    from mlflow import MlflowClient

    return MlflowClient(store_uri(tmp))


def _children(client, parent: str) -> list:
    exp = client.get_experiment_by_name("cvsweep").experiment_id
    return client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'")


@pytest.mark.slow
def test_runs_that_did_not_finish_draw_no_curve(store, data_dir):
    """The groups count finished runs only; a figure of failed runs' partial curves, under an
    n of runs with no final result, would disagree with them."""
    sweep_dir = Path(store["tmp"]) / "b" / "multirun"
    report = (sweep_dir / "comparison.md").read_text()
    assert "**2 run(s) did not finish:**" in report
    assert "No run that logged test accuracy finished, so there are no figures." in report
    assert not list(sweep_dir.glob("comparison_*.png"))
    client = _client(Path(store["tmp"]))
    logged = {a.path for a in client.list_artifacts(sweep_parent_id(store["failed"]))}
    assert "comparison.md" in logged and not {p for p in logged if p.endswith(".png")}
    # The parent, FAILED in the UI, says which of its jobs made it so.
    parent = client.get_run(sweep_parent_id(store["failed"]))
    assert parent.info.status == "FAILED"
    reason = parent.data.tags["failure_reason"]
    assert reason.startswith("2 of 2 runs did not finish: optimizer=adam (FAILED: RuntimeError: ")
    assert "; optimizer=sgd (FAILED: RuntimeError: injected fault at mini-batch 6" in reason
    # Its runs did log test accuracy before they failed.
    children = _children(client, sweep_parent_id(store["failed"]))
    assert children and all(client.get_metric_history(r.info.run_id, "test_acc") for r in children)


@pytest.mark.slow
def test_a_sweep_whose_jobs_made_no_runs_says_why(store, data_dir):
    tmp = Path(store["tmp"])
    parent = sweep_parent_id(store["no_data"])
    proc = _compare(tmp, data_dir, parent)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = proc.stderr.strip()
    assert message.startswith(f"error: Run {parent} is the parent of the sweep")
    assert "whose jobs made no runs to compare: 1 job(s) failed before their runs were created" in (
        message
    )
    assert "it is truncated or corrupt" in message and "damaged" not in message
    assert len(message.splitlines()) == 1
    # The report's row shows the start of the long error, cut at a word and marked as cut.
    report = (tmp / "c" / "multirun" / "comparison.md").read_text()
    (row,) = [line for line in report.splitlines() if "| FAILED (Data file " in line]
    assert "t10k-labels-idx1-ubyte.gz cannot be read (EOFError:" in row
    assert " …) |" in row, row


@pytest.mark.slow
def test_a_sweep_still_starting_or_stopped_before_its_jobs_is_said_so(store, data_dir, tmp_path):
    shutil.copy(Path(store["tmp"]) / "mlflow.db", tmp_path / "mlflow.db")
    client = _client(tmp_path)
    tags = {"cvsweep.sweep": "true"}
    exp = client.get_experiment_by_name("cvsweep").experiment_id
    starting = client.create_run(exp, run_name="sweep: optimizer=sgd,adam", tags=tags)
    proc = _compare(tmp_path, data_dir, starting.info.run_id)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "which has no runs yet: it is still running" in proc.stderr
    stopped = client.create_run(exp, run_name="sweep: augment=none,flip", tags=tags)
    client.set_tag(stopped.info.run_id, "failure_reason", "interrupted")
    client.set_terminated(stopped.info.run_id, "KILLED")
    proc = _compare(tmp_path, data_dir, stopped.info.run_id)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "which ended KILLED (interrupted) before any of its jobs made a run" in proc.stderr


@pytest.mark.slow
def test_a_running_run_is_not_called_one_that_did_not_finish(store, data_dir, tmp_path):
    shutil.copy(Path(store["tmp"]) / "mlflow.db", tmp_path / "mlflow.db")
    client = _client(tmp_path)
    parent = sweep_parent_id(store["datasets"])
    children = _children(client, parent)
    client.update_run(parent, status="RUNNING")
    client.update_run(children[0].info.run_id, status="RUNNING")
    proc = _compare(tmp_path, data_dir, parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "did not finish" not in proc.stdout
    assert "**1 run(s) have not finished yet** (RUNNING: still training" in proc.stdout
    assert "is still running: this report has the 2 run(s) it has made so far" in proc.stderr


@pytest.mark.slow
def test_one_job_of_a_sweep_named_alone_points_to_its_sweep(store, data_dir):
    tmp = Path(store["tmp"])
    parent = sweep_parent_id(store["datasets"])
    child = re.search(r"mlflow run: ([0-9a-f]{32})", store["datasets"].stdout).group(1)
    proc = _compare(tmp, data_dir, child)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"note: run {child} is one job of the sweep" in proc.stderr
    assert f"`cvsweep compare {parent}` compares all of that sweep's runs" in proc.stderr
    # The same id as the MLflow UI's address bar may spell it, upper case: the same run.
    upper = _compare(tmp, data_dir, child.upper())
    assert upper.returncode == 0, upper.stderr[-2000:]
    assert child in upper.stdout


@pytest.mark.slow
def test_a_target_that_is_not_quite_run_ids_names_the_bad_part(store, data_dir):
    tmp = Path(store["tmp"])
    child = re.search(r"mlflow run: ([0-9a-f]{32})", store["datasets"].stdout).group(1)
    proc = _compare(tmp, data_dir, f"{child},optimzer")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: 'optimzer' in ")
    assert "is not a run id (32 hex digits)" in proc.stderr
    proc = _compare(tmp, data_dir, child[:12])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"error: '{child[:12]}' is not a whole run id (32 hex digits; it has 12)" in proc.stderr
    # A 40-digit id is a run id to `compare` as to `rerun` and `evaluate`: looked up, not
    # taken for an experiment name.
    long_id = "ab" * 20
    proc = _compare(tmp, data_dir, long_id)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"Run {long_id} does not exist in this store." in proc.stderr


@pytest.mark.slow
def test_by_a_key_that_pools_two_datasets_says_so(store, data_dir):
    tmp = Path(store["tmp"])
    proc = _compare(tmp, data_dir, sweep_parent_id(store["datasets"]), "--by", "optimizer")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pooled over dataset" in proc.stdout
    assert (
        "note: these runs are of different datasets, and --by optimizer averages them "
        "together; --by dataset,optimizer keeps them apart"
    ) in proc.stderr
    apart = _compare(tmp, data_dir, sweep_parent_id(store["datasets"]), "--by", "dataset,optimizer")
    assert apart.returncode == 0, apart.stderr[-2000:]
    assert "different datasets" not in apart.stderr


@pytest.mark.slow
def test_a_presets_sweep_is_named_by_what_it_sweeps(tmp_path, data_dir):
    """`experiment=shapes` sweeps model=cnn,cnn_c6 through its own sweeper params: the parent
    run, which the MLflow UI shows first, says so."""
    proc = run_train(
        ["experiment=shapes", f"tracking.uri={store_uri(tmp_path)}"], tmp_path, data_dir
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(sweep: experiment=shapes model=cnn,cnn_c6)" in proc.stdout
    parent = _client(tmp_path).get_run(sweep_parent_id(proc))
    assert parent.info.run_name == "sweep: experiment=shapes model=cnn,cnn_c6"
    assert "# sweep: experiment=shapes model=cnn,cnn_c6\n" in proc.stdout
    # A value the command line sweeps instead is named once, as the command line gave it.
    args = ["experiment=shapes", "model=cnn", "trainer.report_batch_size=8,16"]
    again = run_train([*args, f"tracking.uri={store_uri(tmp_path)}"], tmp_path / "b", data_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "(sweep: experiment=shapes model=cnn trainer.report_batch_size=8,16)" in again.stdout
    # A table at another batch size is a result of its own (it was skipped as "identical" to
    # the batch-16 run, whose table the report then showed); at 16 the first sweep's is reused.
    assert again.stdout.count("skipped: identical to finished run") == 1
    client = _client(tmp_path)
    (at_8,) = [
        r
        for r in client.search_runs([parent.info.experiment_id])
        if r.data.params.get("trainer.report_batch_size") == "8"
    ]
    table = client.download_artifacts(at_8.info.run_id, "shape_report.md", str(tmp_path))
    assert Path(table).read_text().startswith("Shape report: model=cnn, batch size 8")


@pytest.mark.slow
def test_a_report_without_figures_says_why(store, data_dir):
    """A sweep over seeds only has no swept key to draw a figure by: the report says so and
    how to draw one, instead of ending without figures and without a word."""
    report = (Path(store["tmp"]) / "d" / "multirun" / "comparison.md").read_text()
    assert "Only the seed differs between these runs, so there is no figure per swept key" in (
        report
    )
    assert "`--by seed` draws one line per seed" in report
    tmp = Path(store["tmp"])
    by_seed = _compare(tmp, data_dir, sweep_parent_id(store["seeds"]), "--by", "seed")
    assert by_seed.returncode == 0, by_seed.stderr[-2000:]
    assert (tmp / "cmp" / "comparison_seed.png").is_file()
    child = re.search(r"mlflow run: ([0-9a-f]{32})", store["seeds"].stdout).group(1)
    one = _compare(tmp, data_dir, child)
    assert one.returncode == 0, one.stderr[-2000:]
    assert "No key differs between these runs, so there is no figure per swept key" in one.stdout
    assert "its curves.png artifact" in one.stdout


def test_a_search_reads_every_page_of_runs(tmp_path):
    """compare and report search page by page: one search stops at its page size, and an
    experiment larger than that would lose runs from a comparison without a word."""
    from cvsweep.tracking import search_all_runs

    client = _client(tmp_path)
    exp = client.create_experiment("many")
    made = {client.create_run(exp).info.run_id for _ in range(5)}
    assert {r.info.run_id for r in search_all_runs(client, [exp], page_size=2)} == made


def test_rows_are_ordered_by_their_numbers_as_numbers():
    """seed=2 before seed=10 and lr=0.01 before lr=0.1 in the tables and the legends."""
    from cvsweep.compare import natural_key

    labels = ["seed=10", "optimizer.lr=0.1", "seed=2", "optimizer.lr=0.01", "optimizer.lr=1e-3"]
    assert sorted(labels, key=natural_key) == [
        "optimizer.lr=1e-3",
        "optimizer.lr=0.01",
        "optimizer.lr=0.1",
        "seed=2",
        "seed=10",
    ]
