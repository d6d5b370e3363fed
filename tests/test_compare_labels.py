"""`cvsweep compare` labels and groups runs by what they trained with, compared as values."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from .conftest import QUICK, cli_env, run_cvsweep, run_train, store_uri

# The tests share a module-scoped fixture: pytest-xdist runs them all on one worker.
pytestmark = pytest.mark.xdist_group("compare_labels")

PHASED = [
    "experiment=fashion_two_phase",
    "seed=0",
    "schedule.phases.0.epochs=1",
    "schedule.phases.1.epochs=1",
    "optimizer.lr=0.01",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory, data_dir):
    """A plain SGD run, a phased run, and lr=1e6 spelled by a sweep and by a single run."""
    tmp = tmp_path_factory.mktemp("labels")
    uri = f"tracking.uri={store_uri(tmp)}"
    plain = run_train([*QUICK, "optimizer=sgd", uri], tmp / "plain", data_dir)
    assert plain.returncode == 0, plain.stderr[-2000:]
    phased = run_train(["-m", *QUICK, *PHASED, uri], tmp / "phased", data_dir)
    assert phased.returncode == 0, phased.stderr[-2000:]
    assert re.search(r"optimizer: .*optimizer\.lr=0\.01.* not used", phased.stdout), phased.stdout
    # lr=1e6 diverges (FAILED, non_finite_loss): still a row, labelled by its value.
    run_train(["-m", *QUICK, "optimizer=sgd", "optimizer.lr=1e6,0.01", uri], tmp, data_dir)
    run_train([*QUICK, "optimizer=sgd", "optimizer.lr=1e6", "seed=1", uri], tmp / "one", data_dir)
    return tmp


def _compare(tmp: Path, data_dir: Path, *args: str):
    return run_cvsweep(
        ["compare", *args, "--tracking-uri", store_uri(tmp)], tmp, cli_env(data_dir), timeout=120
    )


def _rows(report: str) -> list[str]:
    """The run table's first cells (the labels)."""
    table = report.split("## Groups", 1)[0]
    return [
        line.split(" | ")[0][2:]
        for line in table.splitlines()
        if re.search(r" \| [0-9a-f]{32} \| ", line)
    ]


def _runs(tmp: Path, token: str, *, lr: bool = True) -> list:
    """The store's runs (not sweep parents) whose overrides include token; lr=False: and no
    optimizer.lr."""
    from mlflow import MlflowClient

    client = MlflowClient(store_uri(tmp))
    exp = client.get_experiment_by_name("cvsweep")
    found = []
    for r in client.search_runs([exp.experiment_id], max_results=100):
        tokens = r.data.tags.get("overrides", "").split()
        if r.data.tags.get("cvsweep.sweep") == "true" or token not in tokens:
            continue
        if lr or not any(t.startswith("optimizer.lr=") for t in tokens):
            found.append(r)
    return found


def test_labels_show_what_each_run_trained_with(store, data_dir):
    proc = _compare(store, data_dir, "cvsweep", "--out", str(store / "cmp"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _rows(proc.stdout)
    assert len(rows) == 4, proc.stdout
    assert "=?" not in proc.stdout and "schedule.phases" not in proc.stdout
    (phased,) = [row for row in rows if "sgd then adam" in row]
    # Its phases trained at 1e-4: the optimizer's lr it did not use is no part of its label.
    assert "optimizer.lr" not in phased and "trainer.epochs=2" in phased, phased
    assert "did not train with that setting" in proc.stdout and "optimizer.lr in `" in proc.stdout
    assert "trainer.epochs=1" not in proc.stdout.split("\n\n| run |", 1)[0]  # not "set alike"
    assert sum("optimizer.lr=0.01" in row for row in rows) == 1


def test_by_a_key_a_run_did_not_use_leaves_it_out_of_the_groups(store, data_dir):
    proc = _compare(store, data_dir, "cvsweep", "--by", "optimizer.lr", "--out", str(store / "by"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    groups = proc.stdout.split("## Groups", 1)[1].split("\n## ", 1)[0]
    assert "| optimizer.lr=0.01 | 1 |" in groups, groups
    assert "Not in these groups (1 run): `" in groups and "sgd then adam" in groups


def test_one_value_spelled_two_ways_is_one_value(store, data_dir):
    runs = _runs(store, "optimizer.lr=1e6") + _runs(store, "optimizer.lr=1000000.0")
    ids = [r.info.run_id for r in runs]
    assert len(ids) == 2, ids
    proc = _compare(store, data_dir, ",".join(ids), "--out", str(store / "spelled"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(_rows(proc.stdout)) == ["seed=0", "seed=1"], proc.stdout
    alike = re.search(r"Set alike in every run: `([^`]*)`", proc.stdout).group(1).split()
    assert "optimizer=sgd" in alike and "optimizer.lr=1000000" in alike, alike
    assert "optimizer.lr=1000000" in proc.stdout and "optimizer.lr=1e6" not in proc.stdout


def test_an_unknown_by_key_is_one_paragraph_without_internal_keys(store, data_dir):
    proc = _compare(store, data_dir, "cvsweep", "--by", "optimzer", "--out", str(store / "typo"))
    assert proc.returncode == 2
    message = proc.stderr.strip()
    assert "\n" not in message, message
    assert message.startswith("error: --by 'optimzer': no compared run has a param or override")
    assert "Did you mean 'optimizer'" in message
    assert "Keys that differ between these runs: " in message
    assert "tracking." not in message and "fault_at_step" not in message
    assert len(message) < 500, message


def test_a_killed_run_of_a_config_that_finished_later_is_not_unfinished(store, data_dir, tmp_path):
    """A kill before the first checkpoint leaves a KILLED run that a relaunch cannot resume:
    the relaunch makes a new run of the same config, which finishes."""
    from mlflow import MlflowClient

    shutil.copy(store / "mlflow.db", tmp_path / "mlflow.db")
    (done,) = _runs(tmp_path, "optimizer=sgd", lr=False)
    tags = {
        k: v for k, v in done.data.tags.items() if k in ("config_hash", "group_key", "overrides")
    }
    client = MlflowClient(store_uri(tmp_path))
    killed = client.create_run(done.info.experiment_id, run_name="optimizer=sgd", tags=tags)
    for key, value in done.data.params.items():
        client.log_param(killed.info.run_id, key, value)
    client.set_terminated(killed.info.run_id, "KILLED", end_time=done.info.start_time - 1)
    proc = _compare(tmp_path, data_dir, "cvsweep", "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(KILLED)" not in proc.stdout and killed.info.run_id not in proc.stdout
    assert "note: 1 failed or killed run(s) are left out: their config has a finished run" in (
        proc.stderr
    )
    # The sweep's FAILED lr=1e6 job has no finished run of its config: still listed.
    assert "**2 run(s) did not finish:**" in proc.stdout


def test_values_are_compared_not_spellings():
    from cvsweep.compare import RunSummary, canonical, swept_keys

    assert canonical("1e6") == canonical("1000000.0") == "1000000"
    assert canonical("none") == "none" and canonical("None") == canonical("null")
    assert canonical("0.010") == "0.01" and canonical("True") == canonical("true")
    assert (
        canonical("sgd then adam") == "sgd then adam" and canonical("[0.9,0.999]") == "[0.9,0.999]"
    )

    def run(rid: str, lr: str, logged: str) -> RunSummary:
        params = {"optimizer": "sgd", "optimizer.lr": logged, "seed": "0"}
        return RunSummary(
            rid, rid, "FINISHED", {"optimizer.lr": lr}, params, "g", 0.9, 0.9, 0.1, 1.0
        )

    assert swept_keys([run("a", "1e6", "1000000.0"), run("b", "1000000.0", "1000000.0")]) == []


def test_a_schedule_setting_its_scheduler_does_not_read_labels_no_run():
    """`schedule.min_lr` is cosine's: a step or constant run logged its default, 0, and did not
    train with it, so comparing them with a cosine run that set it labels nobody by it."""
    from cvsweep.compare import RunSummary, swept_keys, unused_keys

    def run(rid: str, schedule: str, scheduler: str, overrides: dict[str, str]) -> RunSummary:
        params = {
            "schedule": schedule,
            "schedule.scheduler": scheduler,
            "schedule.min_lr": overrides.get("schedule.min_lr", "0.0"),
            "schedule.gamma": "0.7",
            "schedule.step_size": "1",
            "seed": "0",
        }
        return RunSummary(
            rid,
            rid,
            "FINISHED",
            overrides,
            params,
            "g",
            0.9,
            0.9,
            0.1,
            1.0,
            unused=unused_keys(params, overrides),
        )

    cosine = run("a", "cosine", "cosine", {"schedule": "cosine", "schedule.min_lr": "1e-4"})
    step = run("b", "step", "step", {"schedule": "step"})
    constant = run("c", "constant", "constant", {"schedule": "constant"})
    assert step.unused == {"schedule.min_lr"} and "schedule.gamma" not in step.unused
    assert swept_keys([cosine, step, constant]) == ["schedule"]
    other = run("d", "cosine", "cosine", {"schedule": "cosine", "schedule.min_lr": "0"})
    assert swept_keys([cosine, other, step]) == ["schedule", "schedule.min_lr"]


def test_a_run_says_which_schedule_setting_its_scheduler_does_not_read(tmp_path, data_dir):
    args = [*QUICK, "schedule=step", "schedule.min_lr=0.1", "tracking=none"]
    proc = run_train(args, tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        "note: schedule.min_lr=0.1 not used: the step scheduler of schedule step reads "
        "schedule.step_size, schedule.gamma (choose another with schedule=...)"
    ) in proc.stdout, proc.stdout[-2000:]


def test_an_on_off_setting_is_one_value_however_spelled():
    from cvsweep.compare import RunSummary, swept_keys, value_of

    def run(rid: str, overrides: dict[str, str], logged: str) -> RunSummary:
        params = {"trainer.cudnn_benchmark": logged, "seed": "0"}
        return RunSummary(rid, rid, "FINISHED", overrides, params, "g", 0.9, 0.9, 0.1, 1.0)

    default = run("a", {}, "False")
    word = run("b", {"trainer.cudnn_benchmark": "off"}, "off")
    assert (
        value_of(default, "trainer.cudnn_benchmark")
        == "off"
        == value_of(word, "trainer.cudnn_benchmark")
    )
    assert swept_keys([default, word]) == []
    assert swept_keys([default, run("c", {"trainer.cudnn_benchmark": "on"}, "on")]) == [
        "trainer.cudnn_benchmark"
    ]


def test_the_train_test_gaps_are_compared_seed_by_seed():
    """The augmentation report calls a smaller gap "less overfitting" only where the per-seed
    gap differences are clear, as every other claim; one seed never is."""
    from cvsweep.compare import RunSummary
    from cvsweep.results.runs import Measured
    from cvsweep.results.sections.augmentation import _gap
    from cvsweep.results.stats import is_clear, paired_difference

    def run(seed: int, train: float, test: float) -> Measured:
        summary = RunSummary(
            str(seed), str(seed), "FINISHED", {}, {"seed": str(seed)}, "g", test, test, 0.1, 1.0
        )
        return Measured(summary, {}, {"train_acc": train}, 0, 1)

    aug = [run(s, 0.90, 0.89) for s in (0, 1, 2)]
    plain = [run(0, 0.95, 0.90), run(1, 0.96, 0.90), run(2, 0.94, 0.90)]
    gaps = paired_difference(aug, plain, _gap)
    assert gaps.n == 3 and gaps.mean < 0 and is_clear(gaps)
    one = paired_difference(aug[:1], plain[:1], _gap)
    assert one.n == 1 and is_clear(one) is None
