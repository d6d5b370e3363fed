"""Getting a logged run back: `rerun`, `evaluate` and `load_model` on what a user meets."""

from __future__ import annotations

import re
import shutil
import signal
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from cvsweep.data import load_raw
from cvsweep.saved_model import SavedModelError, load_model

from .conftest import (
    cli_env,
    read_until,
    run_cvsweep,
    run_train,
    start_train,
    store_uri,
    tracked_quick_run,
    wait_group_gone,
)

# The tests share a module-scoped fixture: pytest-xdist runs them all on one worker.
pytestmark = pytest.mark.xdist_group("reuse_review")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """One tracked quick run: (launch folder, job folder, run id, printed final accuracy)."""
    return tracked_quick_run(tmp_path_factory.mktemp("reuse"), data_dir)


def _cvsweep(args: list[str], cwd: Path, data: Path):
    return run_cvsweep(args, cwd, cli_env(data), timeout=180)


def _runs(uri: str) -> list:
    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _damage(path: Path) -> None:
    """Flip the first bytes of every tensor in a torch.save archive, leaving it a valid zip:
    the damage a bad disk or a half-finished copy over the file leaves."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        members = [i for i in archive.infolist() if "/data/" in i.filename and i.file_size >= 4]
    assert members
    for info in members:
        name_len, extra_len = struct.unpack(
            "<HH", data[info.header_offset + 26 : info.header_offset + 30]
        )
        start = info.header_offset + 30 + name_len + extra_len
        data[start : start + 4] = bytes(b ^ 0xFF for b in data[start : start + 4])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["dataset.name=fashion_mnist"],
            "Override dataset.name=fashion_mnist renames the dataset option without switching "
            "to it: the other settings of dataset=mnist would stay",
        ),
        (
            ["optimizer.name=sgd"],
            "run `python train.py` with the run's `command` tag and optimizer=sgd.",
        ),
        (["tracking.enabled=false"], "a rerun is logged so that it can be compared"),
        (["tracking.uri=sqlite:///elsewhere.db"], "a rerun sets tracking.uri itself"),
        (["trainer.shapes_only=true", "--check"], "so --check has nothing to compare"),
        # said as about a config group, which neither is
        (["optimizer.lr"], "Override 'optimizer.lr' gives no value: rerun takes key=value"),
        (["~seed"], "Override '~seed': a rerun changes values of the logged config and removes"),
        (
            ["seed=abc"],  # OmegaConf's full_key/object_type lines followed
            "Override 'seed=abc' does not fit the logged config: Value 'abc' of type 'str' "
            "could not be converted to Integer.\n",
        ),
        (["=1"], "The override '=1' has no key before its '=': write key=value"),  # key ''
    ],
)
def test_rerun_refuses_overrides_that_would_mislabel_or_lose_the_rerun(
    trained, data_dir, overrides, message
):
    """A renamed group would train Fashion-MNIST with MNIST's normalization and log it as
    dataset=mnist; an untracked or elsewhere-tracked rerun trained in full and then could not
    be compared. Each is refused before training, with nothing logged or left behind."""
    tmp, _, run_id, _ = trained
    uri = store_uri(tmp)
    before = {r.info.run_id for r in _runs(uri)}
    folders = sorted(tmp.glob("outputs/*/*"))
    proc = _cvsweep(["rerun", run_id, *overrides, "--tracking-uri", uri], tmp, data_dir)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "epoch" not in proc.stdout  # nothing trained
    assert {r.info.run_id for r in _runs(uri)} == before
    assert sorted(tmp.glob("outputs/*/*")) == folders  # no job folder left behind


def test_a_shapes_only_rerun_says_there_is_nothing_to_compare(trained, data_dir):
    tmp, _, run_id, _ = trained
    proc = _cvsweep(
        ["rerun", run_id, "trainer.shapes_only=true", "--tracking-uri", store_uri(tmp)],
        tmp,
        data_dir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "there are no numbers to compare" in proc.stdout
    assert "final_test_acc" not in proc.stdout  # no table of dashes


def test_a_run_of_another_store_is_named_where_a_default_store_exists(tmp_path, data_dir, trained):
    """The run's job folder is here and says which store it was logged to; the folder also
    has an mlflow.db of its own, so the run is looked for there first."""
    tmp, folder, run_id, _ = trained
    here = tmp_path / "here"
    here.mkdir()
    shutil.copytree(folder, here / "outputs" / "2026-01-01" / "00-00-00")
    MlflowClient(store_uri(here)).search_experiments()  # an empty default store
    for command in (["evaluate", run_id], ["rerun", run_id]):
        proc = _cvsweep(command, here, data_dir)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert f"Run {run_id} does not exist in the store sqlite:///{here}/mlflow.db" in proc.stderr
        assert (
            f"was tracked in {store_uri(tmp)}: pass --tracking-uri {store_uri(tmp)}" in proc.stderr
        )
    # Given the store, the hint is not repeated for an id it lacks.
    other = _cvsweep(["evaluate", "0" * 32, "--tracking-uri", store_uri(tmp)], here, data_dir)
    assert other.returncode == 2 and "pass --tracking-uri" not in other.stderr


def test_predict_agrees_with_the_accuracy_evaluate_reports(trained, data_dir):
    """On a CPU with native bf16 the run evaluated under bf16 autocast: predict in fp32 flipped
    images near a boundary and scored another accuracy than the one logged and evaluated."""
    tmp, folder, _, acc = trained
    proc = _cvsweep(["evaluate", str(folder)], tmp, data_dir)
    assert proc.returncode == 0, proc.stderr
    measured = re.search(r"test accuracy ([\d.]+)%", proc.stdout).group(1)
    assert measured == acc
    saved = load_model(folder)
    test = load_raw(data_dir, "mnist", splits=["test"])["test"]
    images, labels = test.images[:1000], test.labels[:1000]
    for given in (images, images.numpy(), images.float() / 255, images.unsqueeze(1).numpy()):
        predicted = saved.predict(given)
        assert f"{100 * (predicted == labels).float().mean().item():.2f}" == acc


def test_load_model_takes_the_path_of_an_mlflow_db_as_its_store(trained, data_dir):
    """As --tracking-uri does: `tracking_uri="mlflow.db"` was refused as 'not a store URI',
    in a message naming a command-line flag."""
    tmp, folder, run_id, _ = trained
    images = load_raw(data_dir, "mnist", splits=["test"])["test"].images[:100]
    expected = load_model(folder).predict(images)
    for store in (tmp / "mlflow.db", str(tmp / "mlflow.db")):
        saved = load_model(run_id, tracking_uri=store)
        assert saved.source == f"run {run_id}"
        assert torch.equal(saved.predict(images), expected)


def test_predict_names_what_is_wrong_with_its_input(trained):
    _, folder, _, _ = trained
    saved = load_model(folder)
    flat = torch.zeros(3, 784, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"images of shape \(3, 784\): this model takes"):
        saved.predict(flat)  # the shape given, not one made from it
    sixteen_bit = np.zeros((2, 28, 28), dtype=np.uint16)  # as PIL gives a 16-bit PNG
    assert saved.predict(sixteen_bit).shape == (2,)
    with pytest.raises(ValueError, match="pixel values from 0 to 1000: integer images are"):
        saved.predict(sixteen_bit + np.uint16(1000) * (np.arange(28) > 10))
    with pytest.raises(ValueError, match="NaN or infinity"):
        saved.predict(torch.full((1, 28, 28), float("nan")))
    with pytest.raises(TypeError, match="images of type str: pass a numpy array"):
        saved.predict("digit.png")
    with pytest.raises(TypeError, match="images of dtype torch.complex64"):
        saved.predict(torch.zeros(1, 28, 28, dtype=torch.complex64))
    assert saved.predict(torch.zeros(0, 28, 28, dtype=torch.uint8)).shape == (0,)


def test_a_model_file_changed_since_it_was_written_is_refused(trained, tmp_path, data_dir):
    """torch.load reads tensor bytes unchecked: the damaged file was scored (8 % instead of
    the logged accuracy) and predicted with, without a word."""
    tmp, folder, _, _ = trained
    copy = tmp_path / "job"
    shutil.copytree(folder, copy)
    _damage(copy / "model.pth")
    proc = _cvsweep(["evaluate", str(copy)], tmp, data_dir)
    assert proc.returncode == 2, proc.stdout
    assert f"The model file {copy}/model.pth cannot be read: it is a damaged PyTorch file" in (
        proc.stderr
    )
    assert "fails its checksum (changed since it was written)" in proc.stderr
    with pytest.raises(SavedModelError, match="fails its checksum"):
        load_model(copy)


def test_evaluate_of_a_sweep_folder_names_its_jobs(tmp_path, data_dir):
    """The sweep's folder, the one a sweep prints, was said not to look like a job folder."""
    proc = run_train(
        ["-m", "seed=0,1", "trainer.shapes_only=true", "tracking=none"], tmp_path, data_dir
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = tmp_path / "multirun"
    said = _cvsweep(["evaluate", str(sweep)], tmp_path, data_dir)
    assert said.returncode == 2
    assert (
        f"{sweep} holds no model.pth: it is not a job folder but a folder of 2, as a sweep's "
        f"folder is: give one of them ({sweep}/0, {sweep}/1)." in said.stderr
    )


@pytest.mark.slow
def test_a_damaged_checkpoint_is_not_resumed_from(tmp_path, data_dir):
    """A job folder's checkpoint damaged after SIGTERM saved the exact state in it: the run
    resumes from the copy its store holds, to the numbers of an uninterrupted run, instead of
    from the damaged weights."""
    args = [
        "trainer.epochs=2",
        "dataset.train_limit=1024",
        "dataset.test_limit=500",
        "trainer.log_every=4",
        "trainer.progress=off",
        "trainer.num_threads=2",
    ]
    reference = run_train([*args, "tracking.enabled=false"], tmp_path / "ref", data_dir)
    assert reference.returncode == 0, reference.stderr[-2000:]
    uri = f"tracking.uri={store_uri(tmp_path)}"
    proc = start_train([*args, uri, f"hydra.run.dir={tmp_path}/k"], tmp_path, data_dir)
    read_until(proc, "step     24 |", timeout=240)  # epoch 2 of 16 steps each
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, output[-2000:]
    assert wait_group_gone(proc.pid)
    _damage(tmp_path / "k" / "checkpoint.pt")
    resumed = run_train([*args, uri], tmp_path / "resumed", data_dir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"note: the checkpoint {tmp_path}/k/checkpoint.pt cannot be read" in resumed.stdout
    assert "fails its checksum" in resumed.stdout
    last = [ln for ln in reference.stdout.splitlines() if "step     32 |" in ln]
    assert last and last == [ln for ln in resumed.stdout.splitlines() if "step     32 |" in ln]


def test_evaluate_names_its_own_option_for_another_data_root(trained, data_dir):
    """The note a run trained with CVSWEEP_DATA set gets in a shell without it told evaluate's
    user to pass dataset.root, which evaluate does not take."""
    tmp, folder, _, acc = trained
    env = {k: v for k, v in cli_env(data_dir).items() if k != "CVSWEEP_DATA"}
    proc = run_cvsweep(["evaluate", str(folder)], tmp, env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert f"reading it from {data_dir}, where the run read it" in proc.stdout
    assert "(set CVSWEEP_DATA or pass --data-root DIR to choose)" in proc.stdout
    assert f"test accuracy {acc}%" in proc.stdout


def test_a_refused_rerun_leaves_an_out_folder_as_it_was(trained, tmp_path, data_dir):
    """The refused config's .hydra/ stayed in the user's own folder, and the next rerun there
    was refused as "the job of another config"."""
    tmp, _, run_id, _ = trained
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("kept\n")
    store = ["--tracking-uri", store_uri(tmp), "--out", str(mine)]
    refused = _cvsweep(["rerun", run_id, "optimizer.lr=-1", *store], tmp, data_dir)
    assert refused.returncode == 2 and "the learning rate must be > 0" in refused.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    # A model.pth of the user's own, in a folder no job records, was replaced without a word.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "model.pth").write_bytes(b"my weights")
    other = ["--tracking-uri", store_uri(tmp), "--out", str(theirs)]
    kept = _cvsweep(["rerun", run_id, *other], tmp, data_dir)
    assert kept.returncode == 2, kept.stdout[-2000:] + kept.stderr[-2000:]
    assert f"--out {theirs}: it holds model.pth of no job that cvsweep records there" in (
        kept.stderr
    )
    assert (theirs / "model.pth").read_bytes() == b"my weights"
    assert sorted(p.name for p in theirs.iterdir()) == ["model.pth"]
    again = _cvsweep(["rerun", run_id, "--check", *store], tmp, data_dir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "check passed: largest difference 0.000e+00" in again.stdout
    assert (mine / "model.pth").is_file() and (mine / "notes.txt").read_text() == "kept\n"
    # Its job folder has the train.log every job folder has: what the rerun printed.
    log = (mine / "train.log").read_text()
    assert "Shape report: model=cnn" in log and "mlflow run: " in log
    assert log.rstrip().splitlines()[-1].startswith("final test accuracy: ")
