"""Files and settings a user edited by hand, and values no run writes: one paragraph each.

A job folder's config, model.pth and job_result.json were read as cvsweep wrote them: an edited
`dataset.std: 0` crashed `evaluate` with ZeroDivisionError, an accuracy of 2.5 was shown as
"250.00%", a thread count of 100000 ended in a segmentation fault.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from cvsweep.saved_model import SavedModelError, load_model

from .conftest import cli_env, run_cvsweep, run_train

pytestmark = pytest.mark.xdist_group("edited_files")

TINY = ["trainer.epochs=1", "dataset.train_limit=256", "dataset.test_limit=100"]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """One untracked tiny job's folder, to be copied and edited."""
    tmp = tmp_path_factory.mktemp("edited")
    proc = run_train([*TINY, "tracking=none", "trainer.progress=off"], tmp, data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp / "run"


def _copy(job: Path, tmp: Path, name: str) -> Path:
    copy = tmp / name
    shutil.copytree(job, copy)
    return copy


def _edit_config(folder: Path, old: str, new: str) -> None:
    path = folder / ".hydra" / "config.yaml"
    text = path.read_text()
    assert old in text, text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("std: 0.3081", "std: 0", "dataset.std=0.0: must be > 0"),
        ("activation: relu", "activation: swish", "model.layers.0.activation='swish'"),
        ("eval_batch_size: 500", "eval_batch_size: 0", "trainer.eval_batch_size=0"),
        ("test_limit: 100", "test_limit: -5", "dataset.test_limit=-5"),
    ],
)
def test_an_edited_config_is_named_not_a_traceback(job, tmp_path, old, new, named):
    folder = _copy(job, tmp_path, "edited")
    _edit_config(folder, old, new)
    with pytest.raises(SavedModelError) as refused:
        load_model(folder)
    said = str(refused.value)
    assert f"The config {folder / '.hydra' / 'config.yaml'} of {folder} is not one" in said
    assert named in said, said


def test_evaluate_of_an_edited_folder_exits_2_in_one_paragraph(job, tmp_path, data_dir):
    folder = _copy(job, tmp_path, "edited")
    _edit_config(folder, "std: 0.3081", "std: 0")
    proc = run_cvsweep(["evaluate", str(folder)], tmp_path, cli_env(data_dir), timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "dataset.std=0.0: must be > 0" in proc.stderr


def test_a_model_file_with_keys_that_are_no_names_is_refused(job, tmp_path):
    folder = _copy(job, tmp_path, "keys")
    state = torch.load(folder / "model.pth", weights_only=True)
    torch.save({1: torch.zeros(1), **state}, folder / "model.pth")
    with pytest.raises(SavedModelError) as refused:
        load_model(folder)
    assert "holds entries that are not parameter names (1)" in str(refused.value)


def test_values_no_run_records_in_job_result_are_not_shown(job, tmp_path):
    folder = _copy(job, tmp_path, "result")
    assert load_model(folder).recorded.test_acc is not None
    for acc, threads in (("abc", 100000), (2.5, -3), (True, True)):
        path = folder / "job_result.json"
        result = json.loads(path.read_text())
        result.update(final_test_acc=acc, num_threads=threads, device="gpu")
        path.write_text(json.dumps(result))
        recorded = load_model(folder).recorded
        assert (recorded.test_acc, recorded.threads, recorded.device) == (None, None, None)


def test_load_model_names_a_device_or_store_it_cannot_use(job):
    cases = {"gpu": "is not a device a model loads on", "meta": "loads on 'cpu' or 'cuda'"}
    if not torch.cuda.is_available():
        cases["cuda"] = "no CUDA device is available on this machine; use 'cpu'"
    for device, said in cases.items():
        with pytest.raises(SavedModelError) as refused:
            load_model(job, device=device)
        assert said in str(refused.value)
    with pytest.raises(SavedModelError) as refused:
        load_model(job, tracking_uri=5)  # type: ignore[arg-type]
    assert "tracking_uri=5 is not a store" in str(refused.value)


def test_settings_no_command_can_use_are_refused_before_anything_runs(tmp_path, data_dir):
    """A thread count past torch's reach crashed the process; a range with step 0 and a store
    URI whose %00 MLflow decodes to a NUL byte ended in a traceback or a run that hung while
    its tracking process retried the store for minutes."""
    env = {**cli_env(data_dir), "CVSWEEP_NUM_THREADS": "100000"}
    threads = run_train([*TINY, "tracking=none"], tmp_path / "threads", data_dir, env=env)
    assert threads.returncode == 2, threads.stdout[-2000:] + threads.stderr[-2000:]
    assert "CVSWEEP_NUM_THREADS='100000' is not a thread count from 1 to 1024" in threads.stderr
    step = run_train(
        ["-m", "trainer.shapes_only=true", "seed=range(0,3,0)"], tmp_path / "step", data_dir
    )
    assert step.returncode == 2, step.stderr[-2000:]
    assert step.stderr.strip() == (
        "error: Cannot expand the sweep: range(start,stop,step) needs a step other than 0."
    )
    for keyless in (["=1"], ["-m", "=1,2"]):  # a key lost to an unset shell variable
        proc = run_train([*keyless, "trainer.shapes_only=true"], tmp_path / "keyless", data_dir)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.strip() == (
            f"error: The override {keyless[-1]!r} has no key before its '=': write key=value "
            "(optimizer.lr=0.01, say)."
        )
        assert not (tmp_path / "keyless" / "mlflow.db").exists()
    nul = run_train([*TINY, "tracking.uri=sqlite:///%00"], tmp_path / "nul", data_dir)
    assert nul.returncode == 2, nul.stdout[-2000:] + nul.stderr[-2000:]
    assert "its path holds %00, which MLflow's database layer decodes to a NUL byte" in (nul.stderr)
    assert "training cnn" not in nul.stdout
    # A mistyped CVSWEEP_DATA got a new folder and a 55 MB download, as dataset.root does not.
    nowhere = tmp_path / "dtaa"
    env = {**cli_env(data_dir), "CVSWEEP_DATA": str(nowhere)}
    typo = run_train([*TINY, "tracking=none"], tmp_path / "typo", data_dir, env=env)
    assert typo.returncode == 2, typo.stdout[-2000:] + typo.stderr[-2000:]
    assert f"error: CVSWEEP_DATA={nowhere} names no folder, so mnist is not fetched there" in (
        typo.stderr
    )
    assert not nowhere.exists()


def test_a_jobs_record_given_as_its_model_names_the_folder_to_give(job, tmp_path, data_dir):
    """`evaluate job/.hydra/config.yaml` read the config as weights and then looked for
    job/.hydra/.hydra/config.yaml; an empty compare target was looked up as a folder."""
    for record in (job / ".hydra" / "config.yaml", job / "job_result.json"):
        with pytest.raises(SavedModelError) as refused:
            load_model(record)
        assert str(refused.value) == (
            f"{record} is one of a job's records, not a model: give the job folder ({job}) or "
            "the model.pth in it."
        )
    empty = run_cvsweep(["compare", ""], tmp_path, cli_env(data_dir), timeout=60)
    assert empty.returncode == 2 and empty.stderr.startswith(
        "error: compare was given an empty target: give a sweep's folder"
    ), empty.stderr
