"""The shape report is measured from the real model and matches the assignment's table."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cvsweep.config import ModelConfig
from cvsweep.model import build_model
from cvsweep.report import shape_report

from .conftest import QUICK, REPO, cli_env, run_cvsweep, run_train, store_uri, sweep_parent_id

# The tests share a module-scoped fixture: pytest-xdist runs them all on one worker.
pytestmark = pytest.mark.xdist_group("report")

EXPECTED = {
    "cnn": [
        ("input", None, (16, 1, 28, 28), 0),
        ("conv1", (16, 1, 28, 28), (16, 16, 24, 24), 416),
        ("pool1", (16, 16, 24, 24), (16, 16, 12, 12), 0),
        ("conv2", (16, 16, 12, 12), (16, 32, 10, 10), 4640),
        ("pool2", (16, 32, 10, 10), (16, 32, 5, 5), 0),
        ("conv3", (16, 32, 5, 5), (16, 16, 5, 5), 528),
        ("fc1", (16, 16, 5, 5), (16, 64), 25664),
        ("fc2", (16, 64), (16, 10), 650),
    ],
    "cnn_c6": [
        ("input", None, (16, 1, 28, 28), 0),
        ("conv1", (16, 1, 28, 28), (16, 6, 24, 24), 156),
        ("pool1", (16, 6, 24, 24), (16, 6, 12, 12), 0),
        ("conv2", (16, 6, 12, 12), (16, 32, 10, 10), 1760),
        ("pool2", (16, 32, 10, 10), (16, 32, 5, 5), 0),
        ("conv3", (16, 32, 5, 5), (16, 16, 5, 5), 528),
        ("fc1", (16, 16, 5, 5), (16, 64), 25664),
        ("fc2", (16, 64), (16, 10), 650),
    ],
}
TOTALS = {"cnn": 31898, "cnn_c6": 28758}


def _model(name: str):
    cfg = OmegaConf.merge(
        OmegaConf.structured(ModelConfig), OmegaConf.load(REPO / "conf" / "model" / f"{name}.yaml")
    )
    return build_model(cfg)


@pytest.mark.parametrize("name", ["cnn", "cnn_c6"])
def test_every_row_of_the_table(name: str) -> None:
    report = shape_report(_model(name), name, (1, 28, 28), batch_size=16)
    got = [
        (r.layer, tuple(r.input_shape) or None, tuple(r.output_shape), r.params)
        for r in report.rows
    ]
    assert got == EXPECTED[name]
    assert report.total_params == TOTALS[name]
    md = report.to_markdown()
    assert f"**{TOTALS[name]:,}**" in md
    assert "| conv1 | Conv2d+ReLU | (16, 1, 28, 28) |" in md
    data = json.loads(report.to_json())
    assert data["total_params"] == TOTALS[name]
    assert [r["layer"] for r in data["rows"]] == [row[0] for row in EXPECTED[name]]


def test_batch_size_follows_the_argument() -> None:
    report = shape_report(_model("cnn"), "cnn", (1, 28, 28), batch_size=3)
    assert report.rows[0].output_shape == [3, 1, 28, 28]
    assert report.rows[-1].output_shape == [3, 10]


# ------------------------------------------------- the comparison report of `cvsweep compare`
@pytest.fixture(scope="module")
def relaunched(tmp_path_factory, data_dir):
    """One 2x2 sweep launched twice in one folder: the second launch reuses every run."""
    tmp = tmp_path_factory.mktemp("relaunch")
    args = [
        "-m",
        "optimizer=sgd,adam",
        "augment=none,rot_flip",
        *QUICK,
        f"tracking.uri={store_uri(tmp)}",
    ]
    first = run_train(args, tmp, data_dir, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_train(args, tmp, data_dir, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    return tmp, first, second


def _compare(tmp: Path, data_dir: Path, *args: str):
    return run_cvsweep(
        ["compare", *args, "--tracking-uri", store_uri(tmp)], tmp, cli_env(data_dir), timeout=120
    )


def _group_rows(report: str) -> list[str]:
    section = report.split("## Groups", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "| n |" not in line]


@pytest.mark.slow
def test_relaunched_sweep_compares_the_runs_it_reused(relaunched, data_dir):
    from mlflow import MlflowClient

    tmp, first, second = relaunched
    assert second.stdout.count("skipped: identical to finished run") == 4
    client = MlflowClient(store_uri(tmp))
    old, new = sweep_parent_id(first), sweep_parent_id(second)
    reused = {
        r.info.run_id
        for r in client.search_runs(
            [client.get_run(old).info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{old}'",
        )
    }
    assert len(reused) == 4
    proc = _compare(tmp, data_dir, new, "--out", str(tmp / "cmp-new"))
    assert proc.returncode == 0, proc.stderr
    assert "4 runs; accuracies in %." in proc.stdout
    # The train loss is a log interval's mean: said, as a rerun with another interval differs.
    assert "final_train_loss is the mean training loss over each run's last log interval" in (
        proc.stdout
    )
    table = proc.stdout.split("## Groups", 1)[0]
    assert all(f"| {rid} | FINISHED |" in table for rid in reused)
    assert new not in table
    recorded = json.loads((tmp / "multirun" / "sweep_runs.json").read_text())
    assert set(recorded["run_ids"]) == reused
    # Its folder, from a folder without a store: read from the store the jobs logged to.
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    by_folder = run_cvsweep(
        ["compare", str(tmp / "multirun"), "--out", str(tmp / "cmp-folder")],
        elsewhere,
        cli_env(data_dir),
        timeout=120,
    )
    assert by_folder.returncode == 0, by_folder.stderr
    assert "4 runs; accuracies in %." in by_folder.stdout
    assert sorted(os.listdir(elsewhere)) == []  # no store made where it was typed
    assert "sweep_runs.json" in {f.path for f in client.list_artifacts(new)}


@pytest.mark.slow
def test_a_damaged_sweep_runs_list_is_said_and_the_tagged_runs_still_compare(relaunched, data_dir):
    from urllib.parse import urlparse

    from mlflow import MlflowClient

    tmp, first, second = relaunched
    client = MlflowClient(store_uri(tmp))
    lists = {
        parent: Path(urlparse(client.get_run(parent).info.artifact_uri).path) / "sweep_runs.json"
        for parent in (sweep_parent_id(first), sweep_parent_id(second))
    }
    kept = {parent: path.read_bytes() for parent, path in lists.items()}
    try:
        for path in lists.values():
            path.write_text('{"run_ids": ["0123')  # cut off mid-write
        # The first launch's runs are tagged as its children: still compared, with a warning.
        proc = _compare(tmp, data_dir, sweep_parent_id(first), "--out", str(tmp / "cmp-damaged"))
        assert proc.returncode == 0, proc.stderr
        assert "4 runs; accuracies in %." in proc.stdout
        assert "sweep_runs.json of sweep" in proc.stderr and "is damaged" in proc.stderr
        # The relaunch reused them all: with its list damaged, nothing is left to compare.
        proc = _compare(tmp, data_dir, sweep_parent_id(second), "--out", str(tmp / "cmp-damaged"))
        assert proc.returncode == 2, proc.stderr
        assert "its sweep_runs.json (the list a sweep records" in proc.stderr
        assert "is missing, damaged or names only runs that are gone" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        for parent, path in lists.items():
            path.write_bytes(kept[parent])


@pytest.mark.slow
def test_default_groups_are_configs_and_one_run_has_no_spread(relaunched, data_dir):
    tmp, _, second = relaunched
    proc = _compare(tmp, data_dir, sweep_parent_id(second), "--out", str(tmp / "cmp-default"))
    assert proc.returncode == 0, proc.stderr
    assert "## Groups (mean ± std over seeds)" in proc.stdout
    # Each row names what sets its run apart; what every run has alike is said once above.
    alike = " ".join(QUICK)
    assert f"4 runs; accuracies in %.\nSet alike in every run: `{alike}`.\n" in proc.stdout
    table = proc.stdout.split("## Groups", 1)[0]
    labels = sorted(line.split(" | ")[0] for line in table.splitlines() if " | FINISHED |" in line)
    configs = [
        f"| optimizer={o} augment={a}" for o in ("adam", "sgd") for a in ("none", "rot_flip")
    ]
    # The relaunch trained none of them: each row is marked as reused from the first launch.
    assert labels == [f"{config} †" for config in configs]
    rows = _group_rows(proc.stdout)
    assert sorted(row.split(" | ")[0] for row in rows) == configs
    # Each group's one run is the reused one, and its n says so.
    assert all(re.search(r"\| 1 \(1 †\) \| \d+\.\d\d \| \d+\.\d\d \|$", row) for row in rows), rows
    assert "± 0.00" not in proc.stdout
    assert "(pooled over augment)" in proc.stdout and "(pooled over optimizer)" in proc.stdout


@pytest.mark.slow
def test_by_groups_the_table_and_says_what_is_pooled(relaunched, data_dir):
    tmp, _, second = relaunched
    out = tmp / "cmp-by"
    proc = _compare(tmp, data_dir, sweep_parent_id(second), "--by", "optimizer", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "## Groups by optimizer (mean ± std, pooled over augment)" in proc.stdout
    rows = _group_rows(proc.stdout)
    assert sorted(row.split(" | ")[0] for row in rows) == ["| optimizer=adam", "| optimizer=sgd"]
    assert all(" | 2 (2 †) | " in row and " ± " in row for row in rows), rows
    assert sorted(p.name for p in out.glob("*.png")) == ["comparison_optimizer.png"]

    both = _compare(tmp, data_dir, sweep_parent_id(second), "--by", "optimizer,augment")
    assert both.returncode == 0, both.stderr
    assert "## Groups by optimizer, augment (mean ± std, no other key varies)" in both.stdout
    assert len(_group_rows(both.stdout)) == 4


@pytest.mark.slow
def test_unknown_by_key_is_an_error_listing_the_keys(relaunched, data_dir):
    tmp, _, second = relaunched
    out = tmp / "cmp-typo"
    proc = _compare(tmp, data_dir, sweep_parent_id(second), "--by", "optimzer", "--out", str(out))
    assert proc.returncode == 2
    assert "--by 'optimzer': no compared run has a param or override" in proc.stderr
    assert "Did you mean 'optimizer'" in proc.stderr
    assert "Keys that differ between these runs: optimizer, augment." in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    empty = _compare(tmp, data_dir, sweep_parent_id(second), "--by", "", "--out", str(out))
    assert empty.returncode == 2 and "--by needs at least one key" in empty.stderr
    assert not out.exists()


@pytest.mark.slow
def test_rerun_prints_no_download_progress_bars(relaunched, data_dir):
    from mlflow import MlflowClient

    tmp, first, _ = relaunched
    client = MlflowClient(store_uri(tmp))
    parent = client.get_run(sweep_parent_id(first))
    (child, *_) = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    proc = run_cvsweep(
        ["rerun", child.info.run_id, "--tracking-uri", store_uri(tmp)],
        tmp,
        cli_env(data_dir),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"rerun of {child.info.run_id} -> " in proc.stdout
    assert "Downloading artifacts" not in proc.stdout + proc.stderr


def test_a_key_left_at_its_default_by_one_run_is_still_compared():
    from cvsweep.compare import RunSummary, pooled_keys, swept_keys

    def run(rid: str, overrides: dict[str, str], optimizer: str, augment: str) -> RunSummary:
        params = {"optimizer": optimizer, "augment": augment, "seed": "0"}
        return RunSummary(rid, rid, "FINISHED", overrides, params, rid, 0.9, 0.9, 0.1, 1.0)

    runs = [
        run("a", {}, "adam", "none"),  # the defaults
        run("b", {"optimizer": "sgd"}, "sgd", "none"),
        run("c", {"augment": "rot_flip"}, "adam", "rot_flip"),
    ]
    assert swept_keys(runs) == ["optimizer", "augment"]
    assert pooled_keys(runs, ["optimizer"]) == ["augment"]
    assert swept_keys(runs[:1] + [run("d", {"augment": "none"}, "adam", "none")]) == []


def test_keys_that_change_only_the_display_are_not_compared():
    """trainer.progress (how a run is shown) told apart two runs of one config before: a group
    labelled by one member's display setting, and "pooled over trainer.progress" in the plots."""
    from cvsweep.compare import RunSummary, common_overrides, group_runs, row_labels, swept_keys

    def run(rid: str, overrides: dict[str, str], seed: str) -> RunSummary:
        params = {"optimizer": overrides.get("optimizer", "adam"), "seed": seed}
        key = f"config-{params['optimizer']}"
        return RunSummary(rid, rid, "FINISHED", overrides, params, key, 0.9, 0.9, 0.1, 1.0)

    runs = [
        run("a", {"optimizer": "sgd", "trainer.epochs": "2", "trainer.progress": "on"}, "0"),
        run("b", {"optimizer": "sgd", "trainer.epochs": "2", "trainer.progress": "off"}, "1"),
        run("c", {"optimizer": "adam", "trainer.epochs": "2"}, "0"),
    ]
    assert swept_keys(runs) == ["optimizer"]
    assert common_overrides(runs) == ["trainer.epochs=2"]
    assert row_labels(runs, ["optimizer", "seed"]) == [
        "optimizer=sgd seed=0",
        "optimizer=sgd seed=1",
        "optimizer=adam seed=0",
    ]
    assert [(label, len(m)) for label, m in group_runs(runs, None)] == [
        ("optimizer=sgd", 2),
        ("optimizer=adam", 1),
    ]
    # Labels that would not tell two configs apart fall back to each run's full name.
    assert row_labels(runs, []) == ["a", "b", "c"]


def test_compare_leaves_out_runs_that_trained_nothing_and_counts_a_run_once(tmp_path, data_dir):
    trained = run_train([*QUICK, f"tracking.uri={store_uri(tmp_path)}"], tmp_path, data_dir)
    assert trained.returncode == 0, trained.stderr[-2000:]
    shapes = [*QUICK, "trainer.shapes_only=true", f"tracking.uri={store_uri(tmp_path)}"]
    assert run_train(shapes, tmp_path / "shapes", data_dir).returncode == 0
    out = tmp_path / "cmp"
    proc = _compare(tmp_path, data_dir, "cvsweep", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "note: 1 run(s) with trainer.shapes_only=true trained nothing" in proc.stderr
    report = (out / "comparison.md").read_text()
    assert "1 run;" in report and "shapes_only" not in report
    run_id = re.search(r"mlflow run: ([0-9a-f]{32})", trained.stdout).group(1)
    twice = _compare(tmp_path, data_dir, f"{run_id},{run_id}", "--out", str(tmp_path / "twice"))
    assert twice.returncode == 0, twice.stderr[-2000:]
    assert "Comparison of 1 run\n" in (tmp_path / "twice" / "comparison.md").read_text()


@pytest.mark.slow
def test_evaluate_of_a_sweep_parent_points_to_its_runs(relaunched, data_dir):
    tmp, first, _ = relaunched
    parent = sweep_parent_id(first)
    proc = run_cvsweep(
        ["evaluate", parent, "--tracking-uri", store_uri(tmp)], tmp, cli_env(data_dir), timeout=120
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"Run {parent} is the parent run of a sweep" in proc.stderr
    assert f"`cvsweep compare {parent}` lists the runs that have one" in proc.stderr
    # From another folder, the store is not the default one: the command names it.
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    args = ["evaluate", parent, "--tracking-uri", store_uri(tmp)]
    proc = run_cvsweep(args, elsewhere, cli_env(data_dir), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    said = f"`cvsweep compare {parent} --tracking-uri {store_uri(tmp)}` lists the runs"
    assert said in proc.stderr, proc.stderr


def test_values_a_preset_set_are_compared_too():
    """A preset sets the dataset and schedule through its defaults, not as overrides: runs of two
    datasets must not be labelled, grouped or pooled as if they were alike."""
    from cvsweep.compare import RunSummary, pooled_keys, row_labels, swept_keys

    def run(rid: str, overrides: dict[str, str], **params: str) -> RunSummary:
        logged = {"seed": "0", "trainer.epochs": "1", "optimizer": "adam", **params}
        return RunSummary(rid, rid, "FINISHED", overrides, logged, rid, 0.9, 0.9, 0.1, 1.0)

    mnist = {"dataset": "mnist", "dataset.name": "mnist", "schedule": "onecycle"}
    fashion = {"dataset": "fashion_mnist", "dataset.name": "fashion_mnist", "schedule": "constant"}
    runs = [
        run("a", {"augment": "none"}, augment="none", **mnist),
        run("b", {"experiment": "augmentation", "augment": "none"}, augment="none", **fashion),
        run(
            "c",
            {"experiment": "augmentation", "augment": "rot_flip"},
            augment="rot_flip",
            **fashion,
        ),
    ]
    runs[2].params["trainer.epochs"] = "3"  # a value set outside any group
    assert swept_keys(runs) == ["augment", "experiment", "dataset", "schedule", "trainer.epochs"]
    assert pooled_keys(runs, ["augment"]) == ["experiment", "dataset", "schedule", "trainer.epochs"]
    assert row_labels(runs, ["experiment", "dataset"])[0] == "experiment=none dataset=mnist"
    # A setting that older runs did not log yet is no difference between them.
    runs[1].params["trainer.split_bias_grad"] = "auto"
    assert "trainer.split_bias_grad" not in swept_keys(runs)


def test_compare_of_an_experiment_tells_apart_runs_of_two_datasets(tmp_path, data_dir):
    store = f"tracking.uri={store_uri(tmp_path)}"
    plain = run_train([*QUICK, store], tmp_path / "mnist", data_dir)
    assert plain.returncode == 0, plain.stderr[-2000:]
    preset = [*QUICK, "experiment=augmentation", "seed=0", "augment=none", store]
    fashion = run_train(preset, tmp_path / "fashion", data_dir)
    assert fashion.returncode == 0, fashion.stderr[-2000:]
    out = tmp_path / "cmp"
    proc = _compare(tmp_path, data_dir, "cvsweep", "--by", "augment", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (out / "comparison.md").read_text()
    assert "dataset=fashion_mnist" in report and "dataset=mnist" in report
    assert "experiment=none" in report and "experiment=?" not in report
    pooled = re.search(r"## Groups by augment \(mean ± std, pooled over ([^)]*)\)", report)
    assert pooled and "dataset" in pooled.group(1).split(", "), report


def test_an_accuracy_logged_in_float32_reaches_its_threshold():
    """90 of 100 right is logged as float32(0.9) = 0.89999998; it reached 90 %, and 89 did not."""
    import torch

    from cvsweep.compare import RunSummary

    logged = [(10, float(torch.tensor(0.89))), (20, float(torch.tensor(0.9)))]
    logged.append((30, float(torch.tensor(95) / 100)))
    assert logged[1][1] < 0.9
    run = RunSummary("r", "r", "FINISHED", {}, {}, "g", 0.95, 0.95, 0.1, 1.0, logged)
    assert (run.batches_to(0.9), run.batches_to(0.95), run.batches_to(0.98)) == (20, 30, None)
