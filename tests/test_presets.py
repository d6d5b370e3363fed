"""The experiment presets end to end: each runs through the real CLI, then `cvsweep report`.

Every preset runs as the user would start it (`python train.py experiment=<name>`, no `-m`: the
preset itself puts Hydra in multirun mode), shrunk to a few mini-batches with command-line
overrides, into one SQLite store. The report built from that store must have every section and
figure, and its numbers must be the store's. Slow (a dozen tiny training jobs), so marked.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cvsweep.results import PRESETS

# Slow; its tests share the module-scoped store, so pytest-xdist runs them on one worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("presets")]

ROOT = Path(__file__).parents[1]
DATA = Path(os.environ.get("CVSWEEP_DATA") or ROOT.parent / "shared" / "data")
# A few mini-batches per job; evaluation on 500 test images. skip_finished=false because the
# shrunk presets can coincide (e.g. augmentation and augmentation_long at one epoch), and a
# skipped job would be counted under the other preset.
TINY = [
    "dataset.train_limit=256",
    "dataset.test_limit=500",
    "trainer.log_every=2",
    "trainer.progress=off",
    "tracking.skip_finished=false",
]
# Per preset: what shrinks it further. A command-line value replaces the preset's sweep value
# of the same key (seed=0 instead of seed=0,1,2). optimizers keeps two seeds so that ± and the
# per-seed differences are exercised.
SHRINK = {
    "shapes": [],
    "optimizers": ["trainer.epochs=1", "seed=0,1"],
    "optimizers_tuned": ["trainer.epochs=1", "seed=0,1", "optimizer.lr=0.03"],
    "target99": ["trainer.epochs=1", "seed=0"],
    "fashion_two_phase": ["seed=0", "schedule.phases.0.epochs=1", "schedule.phases.1.epochs=1"],
    "fashion_better": ["seed=0", "trainer.epochs=2"],
    "augmentation": ["seed=0", "trainer.epochs=1"],
    "augmentation_long": ["seed=0", "trainer.epochs=2"],
    "speedrun": ["trainer.epochs=1"],
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["CVSWEEP_DATA"] = str(DATA)
    env["CVSWEEP_NUM_THREADS"] = "1"  # three jobs at a time share the cores
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def _report(uri: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`cvsweep report --tracking-uri URI --out OUT [EXTRA...]`."""
    cmd = ["report", "--tracking-uri", uri, "--out", str(out), *extra]
    return _run([sys.executable, "-m", "cvsweep.cli", *cmd])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """All presets run once into one store, three at a time; then the report is written."""
    if not (DATA / "MNIST").is_dir() or not (DATA / "FashionMNIST").is_dir():
        pytest.skip(f"no data under {DATA}")
    tmp = tmp_path_factory.mktemp("presets")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    # The store exists before the parallel sweeps start, so they never race to create its tables.
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri).search_experiments()

    def launch(name: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        args = [
            sys.executable,
            "train.py",
            f"experiment={name}",
            f"tracking.uri={uri}",
            f"hydra.sweep.dir={tmp / 'multirun' / name}",
            f"hydra.run.dir={tmp / 'run' / name}",
            *TINY,
            *SHRINK[name],
        ]
        return name, _run(args)

    with ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(pool.map(launch, PRESETS))
    for name, proc in done.items():
        assert proc.returncode == 0, f"{name}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    out = tmp / "docs" / "results.md"
    report = _report(uri, out)
    assert report.returncode == 0, report.stderr
    return {"uri": uri, "out": out, "text": out.read_text(), "runs": done, "tmp": tmp}


def _client(store: dict[str, object]):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=str(store["uri"]))


def _runs(store: dict[str, object], preset: str) -> list:
    client = _client(store)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, filter_string=f"params.experiment = '{preset}'")


def _section(text: str, preset: str) -> str:
    """The markdown of one preset's section (up to the next numbered section)."""
    match = re.search(
        rf"^## \d+\. .*\(`experiment={preset}`\)$(.*?)(?=^## \d+\. |\Z)", text, re.S | re.M
    )
    assert match, f"no section for {preset}"
    return match.group(1)


def _mean_std(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * statistics.stdev(values):.2f}"


def test_presets_run_as_sweeps_without_dash_m(store: dict[str, object]) -> None:
    """Each preset made a parent sweep run and children, with no -m on the command line."""
    client = _client(store)
    ids = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(ids, filter_string="tags.`cvsweep.sweep` = 'true'")
    named = {p.data.tags["overrides"].split()[0] for p in parents}
    assert named == {f"experiment={name}" for name in PRESETS}
    expected_children = {
        "shapes": 2,
        "optimizers": 4,
        "optimizers_tuned": 2,
        "target99": 1,
        "fashion_two_phase": 1,
        "fashion_better": 1,
        "augmentation": 2,
        "augmentation_long": 2,
        "speedrun": 1,
    }
    for name, count in expected_children.items():
        runs = _runs(store, name)
        assert len(runs) == count, name
        statuses = {r.info.run_id: (r.info.status, r.data.tags.get("failure_reason")) for r in runs}
        proc = store["runs"][name]  # type: ignore[index]
        assert all(r.info.status == "FINISHED" for r in runs), (
            f"{name}: {statuses}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
        assert all(r.data.tags.get("mlflow.parentRunId") for r in runs), name


def test_a_shapes_only_sweep_draws_no_empty_figure(store: dict[str, object]) -> None:
    out = store["runs"]["shapes"].stdout  # type: ignore[index]
    assert "No run logged test accuracy (none trained), so there are no figures." in out
    assert "comparison_model.png" not in out


def test_the_report_command_names_the_seeds_a_variant_ran(store: dict[str, object]) -> None:
    text = str(store["text"])
    # seed=0,1 replaced the preset's 0,1,2: the command shown must run those two, not three
    assert re.search(
        r"\(command `python train.py experiment=optimizers [^`]*seed=0,1`\)",
        _section(text, "optimizers"),
    )
    assert "seed=" not in _section(text, "speedrun").split("Settings of these runs")[0]
    # ...and the summary's overrides column says the same as the section
    (row,) = [line for line in text.splitlines() if line.startswith("| `optimizers` |")]
    assert "seed=0,1" in row, row


def test_notes_node_and_group_choice_do_not_collide(store: dict[str, object]) -> None:
    """`experiment=<name>` picks the preset; `experiment.*` holds its notes; both are logged."""
    for name in PRESETS:
        run = _runs(store, name)[0]
        params = run.data.params
        assert params["experiment"] == name
        assert params["experiment.title"], name
    opt = {r.data.params["optimizer"]: r.data.params for r in _runs(store, "optimizers")}
    # The per-optimizer lr comes from the notes through an interpolation, resolved when logged.
    assert float(opt["sgd"]["optimizer.lr"]) == 0.01
    assert float(opt["adam"]["optimizer.lr"]) == 0.001
    # trainer values from the preset's sweep params reach the job (not train.yaml's defaults).
    assert {r.data.params["trainer.batch_size"] for r in _runs(store, "fashion_better")} == {"256"}
    assert {r.data.params["trainer.shapes_only"] for r in _runs(store, "shapes")} == {"True"}


def test_report_has_every_section_and_figure(store: dict[str, object]) -> None:
    text = str(store["text"])
    out = Path(str(store["out"]))
    assert "not run yet" not in text.lower()
    for name in PRESETS:
        section = _section(text, name)
        assert f"python train.py experiment={name}" in section
        assert "**Discussion.**" in section
        assert "Wall time:" in section and "CPU" in section
        assert (out.parent / "img" / f"{name}.png").stat().st_size > 5000, name
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (out.parent / link).is_file(), link


def test_report_numbers_are_the_store_numbers(store: dict[str, object]) -> None:
    text = str(store["text"])
    section = _section(text, "optimizers")
    for optimizer in ("sgd", "adam"):
        runs = [r for r in _runs(store, "optimizers") if r.data.params["optimizer"] == optimizer]
        expected = _mean_std([r.data.metrics["final_test_acc"] for r in runs])
        row = next(line for line in section.splitlines() if line.startswith(f"| {optimizer} |"))
        assert f"| {expected} |" in row, (row, expected)
        assert f"| {len(runs)} |" in row

    target = _section(text, "target99")
    target_runs = _runs(store, "target99")
    acc = [r.data.metrics["final_test_acc"] for r in target_runs]
    assert f"**{_mean_std(acc)}**" in target
    assert "| yes |" in target  # model.pth was logged
    assert "`cvsweep evaluate <run id or job folder>` rebuilds the model" in target
    run_id = target_runs[0].info.run_id  # what the section says: that model.pth scores as logged
    check = _run(
        [
            sys.executable,
            "-m",
            "cvsweep.cli",
            "evaluate",
            run_id,
            "--tracking-uri",
            str(store["uri"]),
        ]
    )
    assert check.returncode == 0, check.stderr
    logged = 100 * target_runs[0].data.metrics["final_test_acc"]
    assert f"the run logged {logged:.2f}% on these images: the same" in check.stdout

    shapes = _section(text, "shapes")
    assert "| model=cnn | 16 | 31,898 | 31,898 | yes |" in shapes
    assert "| model=cnn_c6 | 6 | 28,758 | 28,758 | yes |" in shapes

    speed = _section(text, "speedrun")
    (run,) = _runs(store, "speedrun")
    assert f"| {run.data.metrics['train_time_s']:.2f} |" in speed

    for name in ("augmentation", "augmentation_long"):
        section = _section(text, name)
        for augment in ("none", "rot_flip"):
            (r,) = [x for x in _runs(store, name) if x.data.params["augment"] == augment]
            row = next(line for line in section.splitlines() if line.startswith(f"| {augment} |"))
            assert f"| {_mean_std([r.data.metrics['final_test_acc']])} |" in row

    better = _section(text, "fashion_better")
    assert "experiment=fashion_two_phase" in better  # same 2-epoch budget: compared


def test_report_states_the_budget_used(store: dict[str, object]) -> None:
    section = _section(str(store["text"]), "fashion_two_phase")
    assert "schedule.phases.0.epochs=1 schedule.phases.1.epochs=1" in section
    assert "2 epoch(s)" in section
    assert "after the SGD phase (epoch 1)" in section
    # Its 1 + 1 epochs on 256 images cannot test claims made for 10 + 20 on every image.
    assert "at a smaller budget than the claim's, so not a test of it" in section, section
    assert "does not hold" not in section
    # One mini-batch of 256 cannot test a claim about 40: said so, not "does not hold".
    augmentation = _section(str(store["text"]), "augmentation")
    assert "these runs trained 1 mini-batch, too few to test it" in augmentation, augmentation


def test_report_on_a_missing_store_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    proc = _report(f"sqlite:///{tmp_path / 'nope' / 'mlflow.db'}", out)
    assert proc.returncode == 2
    assert "no MLflow store" in proc.stderr
    assert not out.exists()
    assert not (tmp_path / "nope").exists()  # the report never creates a store


def test_report_on_an_empty_store_says_not_run_yet(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()  # creates the (empty) store
    out = tmp_path / "docs" / "results.md"
    proc = _report(uri, out)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    for name in PRESETS:
        assert f"**Not run yet:** `python train.py experiment={name}`" in _section(text, name)
    # Run again, it would replace the document with the same outline; were it a document
    # with results, they would be lost: an existing file is kept, and the user told why.
    out.write_text("results\n")
    again = _report(uri, out)
    assert again.returncode == 2, again.stderr
    assert "holds no finished run of any experiment preset" in again.stderr
    assert out.read_text() == "results\n"
    for bad, why in ((tmp_path, "is a folder"), (out / "x.md", "is a file, so no folder")):
        proc = _report(uri, bad)
        assert proc.returncode == 2 and why in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_report_keeps_a_document_with_results_its_store_lacks(tmp_path: Path) -> None:
    """`cvsweep report` after a few quick runs must not wipe the measured results."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    shapes = _run(
        [sys.executable, "train.py", "experiment=shapes", f"tracking.uri={uri}"]
        + [f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    )
    assert shapes.returncode == 0, shapes.stderr[-3000:]
    out = tmp_path / "results.md"
    measured = (ROOT / "docs" / "results.md").read_text()
    out.write_text(measured)
    proc = _report(uri, out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "has results of the preset(s) augmentation, augmentation_long," in proc.stderr
    assert "it is left as it was" in proc.stderr and "--force" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert out.read_text() == measured
    forced = _report(uri, out, "--force")
    assert forced.returncode == 0, forced.stderr
    text = out.read_text()
    assert "| `shapes` | 2 |" in text and "| `optimizers` | not run yet |" in text


def test_the_summary_has_a_row_for_each_budget_a_preset_ran_at(tmp_path: Path) -> None:
    """A preset run at two budgets has two sections' worth of runs: the summary named one."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for budget in ([], ["dataset.test_limit=100"]):
        args = ["experiment=shapes", *budget, f"tracking.uri={uri}"]
        where = f"hydra.sweep.dir={tmp_path / str(len(budget))}"
        proc = _run([sys.executable, "train.py", *args, where])
        assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "results.md"
    proc = _report(uri, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = out.read_text().split("## Summary of the runs", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in summary.splitlines() if line.startswith("| `shapes`")]
    assert [row.split(" | ")[0] for row in rows] == ["| `shapes` (1 of 2)", "| `shapes` (2 of 2)"]
    assert any("dataset.test_limit=100" in row for row in rows), rows
