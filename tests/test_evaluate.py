"""`cvsweep evaluate` and `load_model`: a saved model.pth is the model its run reported."""

from __future__ import annotations

import argparse
import json
import pickle
import random
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from omegaconf import OmegaConf

from cvsweep.config import ModelConfig
from cvsweep.data import load_raw
from cvsweep.model import build_model
from cvsweep.saved_model import load_model

from .conftest import (
    QUICK,
    REPO,
    cli_env,
    run_cvsweep,
    run_python,
    run_train,
    store_uri,
    tracked_quick_run,
)

# The tests share a module-scoped fixture: pytest-xdist runs them all on one worker.
pytestmark = pytest.mark.xdist_group("evaluate")

try:
    CUDA = torch.cuda.is_available()
except Exception:  # a broken driver: no GPU to test with
    CUDA = False


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """One tracked quick run: (launch folder, job folder, run id, printed final accuracy)."""
    return tracked_quick_run(tmp_path_factory.mktemp("evaluate"), data_dir)


def _evaluate(args: list[str], cwd: Path, data: Path):
    return run_cvsweep(["evaluate", *args], cwd, cli_env(data), timeout=120)


def test_evaluate_measures_the_logged_accuracy_again(trained, data_dir):
    tmp, folder, run_id, acc = trained
    for source in (
        [str(folder)],
        [str(folder / "model.pth")],
        [run_id, "--tracking-uri", store_uri(tmp)],
        [run_id.upper(), "--tracking-uri", store_uri(tmp)],  # an id copied in capitals: the same
    ):
        proc = _evaluate(source, tmp, data_dir)
        assert proc.returncode == 0, proc.stderr
        assert (
            "cnn trained on mnist, optimizer adam, augment none, schedule onecycle" in proc.stdout
        )
        assert f"test accuracy {acc}%" in proc.stdout, (acc, proc.stdout)
        assert "on the first 1000 of the 10000 mnist test images, on cpu" in proc.stdout
        assert f"the run logged {acc}% on these images: the same" in proc.stdout
    whole = _evaluate([str(folder), "--all"], tmp, data_dir)
    assert whole.returncode == 0, whole.stderr
    assert "on all 10000 mnist test images" in whole.stdout
    assert "the run logged" not in whole.stdout  # it logged another number: the first 1000


def test_load_model_classifies_raw_images_as_the_run_did(trained, data_dir):
    _, folder, _, acc = trained
    saved = load_model(folder)
    assert saved.classes == [str(d) for d in range(10)]
    test = load_raw(data_dir, "mnist")["test"]
    images, labels = test.images[:1000], test.labels[:1000]
    predicted = saved.predict(images)  # uint8 (N, 28, 28), as the files hold them
    floats = images.float() / 255  # what torchvision's ToTensor gives, without the channel axis
    before = floats.clone()
    assert torch.equal(saved.predict(floats), predicted)
    assert torch.equal(floats, before)  # the caller's images are not normalized in place
    accuracy = 100 * (predicted == labels).float().mean().item()
    # In the run's own precision, as evaluate scores it: the logged accuracy exactly.
    assert f"{accuracy:.2f}" == f"{float(acc):.2f}", (accuracy, acc)
    assert saved.predict(images[0]).shape == (1,)
    with pytest.raises(ValueError, match=r"this model takes \(1, 28, 28\) images"):
        saved.predict(torch.zeros(2, 3, 28, 28))
    # Integer images of another type read as 0-255 too (a list of ints, say).
    assert torch.equal(saved.predict(images.to(torch.int64)), predicted)
    # 0-255 floats, or images already normalized, would be classified quietly worse: refused.
    with pytest.raises(
        ValueError, match="pixel values from 0 to 255: float images are read as 0-1"
    ):
        saved.predict(images.float())
    with pytest.raises(ValueError, match="not images that are already normalized"):
        saved.predict((floats - 0.1307) / 0.3081)


def test_evaluate_names_what_is_wrong_with_a_source(trained, tmp_path, data_dir):
    tmp, folder, _, _ = trained

    def error_of(source: str, *extra: str) -> str:
        proc = _evaluate([source, *extra], tmp_path, data_dir)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
        return proc.stderr

    stopped = tmp_path / "stopped"
    shutil.copytree(folder, stopped)
    (stopped / "model.pth").unlink()  # what a job stopped mid-training leaves: a checkpoint
    result = json.loads((stopped / "job_result.json").read_text())
    result.update(status="KILLED", final_test_acc=None, signal=15)  # and how it ended
    (stopped / "job_result.json").write_text(json.dumps(result))
    said = error_of(str(stopped))
    run_id = result["run_id"]
    assert f"holds no model.pth: its job (run {run_id}) was stopped before training ended" in said
    # Resumed, it writes its model in the folder of the command that resumes it.
    assert f"`cvsweep evaluate {run_id}` then scores its model" in said
    assert f"`cvsweep evaluate {stopped / 'checkpoint.pt'}` scores the weights it holds" in said
    result["run_id"] = None  # a run that was not tracked: nothing resumes it
    (stopped / "job_result.json").write_text(json.dumps(result))
    said = error_of(str(stopped))
    assert "its job was stopped before training ended, and it was not tracked, so nothing " in said
    (stopped / "job_result.json").unlink()  # killed outright: it recorded nothing
    assert "holds no model.pth: its job was stopped before training ended" in error_of(str(stopped))

    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    (moved / "model.pth").unlink()  # a finished job's model, moved away since
    said = error_of(str(moved))
    assert "its job FINISHED, but its model.pth has been moved or deleted since" in said
    assert f"`cvsweep evaluate {moved / 'checkpoint.pt'}`" in said

    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    (damaged / "model.pth").write_bytes(b"not a model")
    assert f"The model file {damaged / 'model.pth'} cannot be read" in error_of(str(damaged))

    other = tmp_path / "other"
    shutil.copytree(folder, other)
    c6 = OmegaConf.merge(
        OmegaConf.structured(ModelConfig), OmegaConf.load(REPO / "conf" / "model" / "cnn_c6.yaml")
    )
    torch.save(build_model(c6).state_dict(), other / "model.pth")
    said = error_of(str(other))
    assert f"The weights in {other / 'model.pth'} do not fit the model its config" in said
    assert "the two files are not from the same run" in said

    no_config = tmp_path / "no_config"
    shutil.copytree(folder, no_config)
    shutil.rmtree(no_config / ".hydra")
    assert "has no config.yaml beside its model" in error_of(str(no_config))

    cut = tmp_path / "cut"  # a config cut short after its first section, still valid YAML
    shutil.copytree(folder, cut)
    config = cut / ".hydra" / "config.yaml"
    config.write_text(config.read_text().split("\nmodel:")[0] + "\n")
    said = error_of(str(cut))
    assert f"The config {config} of {cut} cannot be read: it has no model section" in said

    assert "'nope' is neither a job folder" in error_of("nope")
    unknown = "0123456789abcdef0123456789abcdef"
    said = error_of(unknown, "--tracking-uri", store_uri(tmp))
    assert f"Run {unknown} does not exist in the store" in said


def test_evaluate_says_when_it_measures_on_another_device_than_the_run(trained, tmp_path, data_dir):
    """A model trained on a GPU, scored on this CPU: other kernels, other rounding; the command
    says so instead of calling a small difference a mismatch."""
    _, folder, _, acc = trained
    moved = tmp_path / "from_gpu"
    shutil.copytree(folder, moved)
    result = json.loads((moved / "job_result.json").read_text())
    assert result["device"] == "cpu" and result["num_threads"] >= 1  # what training recorded
    result["device"] = "cuda"
    (moved / "job_result.json").write_text(json.dumps(result))
    proc = _evaluate([str(moved), "--device", "cpu"], tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr
    assert f"the run logged {acc}% on these images on cuda, whose kernels round" in proc.stdout
    assert "--device cuda measures it as the run did" in proc.stdout
    if not CUDA:
        missing = _evaluate([str(moved), "--device", "cuda"], tmp_path, data_dir)
        assert missing.returncode == 2
        assert "--device cuda: no CUDA device is available on this machine" in missing.stderr


def test_a_relative_data_root_is_read_from_where_the_job_was_launched(trained, tmp_path, data_dir):
    """dataset.root=data (relative) trained from the launch folder; evaluated from elsewhere,
    the command finds the data where training did, not under its own working folder."""
    _, folder, _, acc = trained
    launch = tmp_path / "launch"
    launch.mkdir()
    (launch / "data").symlink_to(data_dir, target_is_directory=True)
    job = tmp_path / "job"
    shutil.copytree(folder, job)
    config = job / ".hydra" / "config.yaml"
    config.write_text(re.sub(r"(?m)^  root: .*$", "  root: data", config.read_text(), count=1))
    hydra = job / ".hydra" / "hydra.yaml"
    hydra.write_text(re.sub(r"(?m)^    cwd: .*$", f"    cwd: {launch}", hydra.read_text()))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in cli_env(data_dir).items() if k != "CVSWEEP_DATA"}
    proc = run_cvsweep(["evaluate", str(job)], elsewhere, env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"the run logged {acc}% on these images: the same" in proc.stdout


def _error(proc) -> str:
    """The one paragraph of a refused source: exit 2, on stderr, nothing else said."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr


def test_a_skipped_job_folder_evaluates_the_finished_run_it_matched(trained, tmp_path, data_dir):
    """The same command again is skipped as identical to the finished run: its folder holds
    no model.pth, and evaluating it evaluates that run's model, saying so."""
    tmp, folder, run_id, acc = trained
    again = run_train([*QUICK, f"tracking.uri={store_uri(tmp)}"], tmp_path, data_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"skipped: identical to finished run {run_id}" in again.stdout
    skipped = tmp_path / "run"
    proc = _evaluate([str(skipped)], tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        f"note: {skipped}: its job was skipped as identical to finished run {run_id}; "
        f"evaluating that run's model ({folder / 'model.pth'})\n"
    ), proc.stdout
    assert f"the run logged {acc}% on these images: the same" in proc.stdout

    # Its store gone (moved, another machine): the run to evaluate is named.
    lost = tmp_path / "lost"
    shutil.copytree(skipped, lost)
    config = lost / ".hydra" / "config.yaml"
    gone = tmp_path / "gone.db"
    config.write_text(config.read_text().replace(store_uri(tmp), f"sqlite:///{gone}"))
    said = _error(_evaluate([str(lost)], tmp_path, data_dir))
    assert f"{lost} holds no model.pth: its job was skipped as identical to finished run " in said
    assert f"(`cvsweep evaluate {run_id} --tracking-uri STORE`" in said
    assert f"There is no MLflow store at {gone}" in said and not gone.exists()
    assert "does not look like a job folder" not in said
    found = _evaluate([str(lost), "--tracking-uri", store_uri(tmp)], tmp_path, data_dir)
    assert found.returncode == 0, found.stderr
    assert f"the run logged {acc}% on these images: the same" in found.stdout


def test_a_failed_job_folder_says_why_and_what_it_kept(tmp_path, data_dir):
    quick = [*QUICK, "tracking.enabled=false"]
    diverged = run_train([*quick, "optimizer.lr=1e9"], tmp_path / "diverged", data_dir)
    assert "Non-finite loss" in diverged.stdout, diverged.stdout[-2000:]
    folder = tmp_path / "diverged" / "run"
    said = _error(_evaluate([str(folder)], tmp_path, data_dir))
    assert f"{folder} holds no model.pth: its job FAILED: Non-finite loss at mini-batch" in said
    assert "No weights were saved (none were good yet)" in said
    assert "does not look like a job folder" not in said

    # An error in epoch 2: the first epoch's model.pth and checkpoint were kept.
    fault = tmp_path / "fault" / "run"
    run_train([*quick, "trainer.epochs=2", "trainer.fault_at_step=12"], fault.parent, data_dir)
    reason = "RuntimeError: injected fault at mini-batch 12 (trainer.fault_at_step)"
    proc = _evaluate([str(fault)], tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        f"note: the job of {fault} FAILED ({reason}): its model.pth holds the weights of its "
        "last finished epoch, not of a finished training\n"
    ), proc.stdout
    (fault / "model.pth").unlink()
    said = _error(_evaluate([str(fault)], tmp_path, data_dir))
    checkpoint = fault / "checkpoint.pt"
    assert f"{fault} holds no model.pth: its job FAILED: {reason} (traceback: " in said
    assert f"Its last checkpoint {checkpoint} was kept: `cvsweep evaluate {checkpoint}`" in said

    # A config error stops the job before it records a result.
    bad = tmp_path / "bad"
    run_train([*quick, "optimizer.lr=-1"], bad, data_dir)
    said = _error(_evaluate([str(bad / "run")], tmp_path, data_dir))
    assert "holds no model.pth: its job recorded no result (job_result.json)" in said


def test_a_file_that_is_no_model_is_named_plainly(trained, tmp_path, data_dir):
    """No torch text (its weights_only advice, its colour codes): what the file is, short;
    a training checkpoint is evaluated by the model weights it holds."""
    tmp, folder, _, acc = trained
    job = tmp_path / "job"
    shutil.copytree(folder, job)
    model = job / "model.pth"
    good = model.read_bytes()
    not_torch = "cannot be read: it is not a PyTorch file: damaged, or not a model.pth."
    for content, expect in (
        (bytes(random.Random(0).getrandbits(8) for _ in range(4000)), not_torch),
        (b"epoch 1 loss 0.1\n", not_torch),
        (good[: len(good) // 2], "cannot be read: it is a damaged PyTorch file"),
    ):
        model.write_bytes(content)
        said = _error(_evaluate([str(job)], tmp_path, data_dir))
        assert f"error: The model file {model} {expect}" in said, said
        assert "weights_only" not in said and "\x1b" not in said and "torch.load" not in said
    model.write_bytes(pickle.dumps({"conv1.weight": [0.5]}))  # a pickle, but not torch's
    said = _error(_evaluate([str(job)], tmp_path, data_dir))
    assert "it is a damaged PyTorch file, or a pickle that is not a model.pth." in said
    torch.save({"args": argparse.Namespace(lr=0.1)}, model)
    said = _error(_evaluate([str(job)], tmp_path, data_dir))
    assert "it holds Python objects besides tensors (argparse.Namespace)" in said
    assert "weights_only" not in said and "\x1b" not in said

    proc = _evaluate([str(folder / "checkpoint.pt")], tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        f"note: {folder / 'checkpoint.pt'} is a training checkpoint, not a model.pth: "
        "evaluating the model weights it holds"
    ), proc.stdout
    assert f"the run logged {acc}% on these images: the same" in proc.stdout  # the final epoch's


def test_a_run_whose_model_artifact_is_damaged_or_missing(tmp_path, data_dir):
    """Named as the run's artifact (not a deleted download folder), and for a finished run
    without one, no advice meant for stopped runs."""
    from mlflow import MlflowClient

    proc = run_train([*QUICK, f"tracking.uri={store_uri(tmp_path)}"], tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = re.search(r"mlflow run: (\w+)", proc.stdout).group(1)
    folder = Path(re.search(r"job folder: (\S+)", proc.stdout).group(1))
    artifacts = MlflowClient(store_uri(tmp_path)).get_run(run_id).info.artifact_uri
    artifact = Path(urlparse(artifacts).path) / "model.pth"
    assert artifact.is_file(), artifacts
    args = [run_id, "--tracking-uri", store_uri(tmp_path)]

    artifact.write_bytes(b"\x00" * 100 + b"nothing to see")
    said = _error(_evaluate(args, tmp_path, data_dir))
    assert said.startswith(
        f"error: The model.pth artifact of run {run_id} cannot be read: it is not a PyTorch file"
    ), said
    assert not re.search(r"/tmp\w{8}/", said), said  # the download folder, deleted by now

    artifact.unlink()
    said = _error(_evaluate(args, tmp_path, data_dir))
    assert said == (
        f"error: Run {run_id} (FINISHED) has no model.pth artifact; its job folder {folder} "
        f"has one: `cvsweep evaluate {folder}`.\n"
    ), said
    (folder / "model.pth").unlink()
    said = _error(_evaluate(args, tmp_path, data_dir))
    assert f"has no model.pth artifact; its job folder {folder} has none either." in said
    assert "stopped run" not in said


def test_a_path_that_does_not_exist_is_named_as_such(tmp_path, data_dir):
    for source in ("outputs/nope", "nope.pth", str(tmp_path / "gone")):
        said = _error(_evaluate([source], tmp_path, data_dir))
        assert said.startswith(f"error: no such file or folder: {source}"), said
        assert "neither a job folder" not in said
    said = _error(_evaluate(["outputs/nope"], tmp_path, data_dir))
    assert f"no such file or folder: outputs/nope (looked for in {tmp_path})" in said


def test_evaluate_needs_only_the_test_files_and_fetch_advice_names_the_root(
    trained, tmp_path, data_dir
):
    tmp, folder, _, acc = trained
    empty = tmp_path / "empty"
    empty.mkdir()
    said = _error(_evaluate([str(folder), "--data-root", str(empty)], tmp_path, data_dir))
    assert f"Run `cvsweep data fetch mnist --root {empty}` or place the files" in said
    # A root one level too deep, or an unexpanded ~, is named with the option it came from
    # (they advised dataset.root=..., and a fetch command that refuses the ~).
    deep = data_dir / "MNIST"
    said = _error(_evaluate([str(folder), "--data-root", str(deep)], tmp_path, data_dir))
    assert said.startswith(f"error: --data-root {deep} is not a data root: "), said
    assert f"use --data-root={data_dir}." in said
    said = _error(_evaluate([str(folder), "--data-root", "~/nope"], tmp_path, data_dir))
    assert said.startswith("error: No folder --data-root ~/nope, and none is made: A ~ is not"), (
        said
    )
    assert "data fetch" not in said
    # A root that is not there is a typo to correct, not a place to fetch into (that made it).
    typo = tmp_path / "typo_dir"
    said = _error(_evaluate([str(folder), "--data-root", str(typo)], tmp_path, data_dir))
    assert said.startswith(f"error: --data-root {typo}: there is no such folder. Check the path"), (
        said
    )
    assert "data fetch" not in said and not typo.exists()
    # Where the root is the one `cvsweep data fetch` fills anyway, no --root (the root the
    # run read is gone too, or evaluate would read the data there).
    job = tmp_path / "job"
    shutil.copytree(folder, job)
    result = json.loads((job / "job_result.json").read_text())
    result["data_root"] = str(tmp_path / "removed")
    (job / "job_result.json").write_text(json.dumps(result))
    proc = run_cvsweep(["evaluate", str(job)], tmp_path, cli_env(empty), timeout=120)
    assert "Run `cvsweep data fetch mnist` or place the files" in _error(proc)

    test_only = tmp_path / "test_only"
    raw = test_only / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for path in (data_dir / "MNIST" / "raw").glob("t10k-*"):
        shutil.copy(path, raw / path.name)
    proc = _evaluate([str(folder), "--data-root", str(test_only)], tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr
    assert f"the run logged {acc}% on these images: the same" in proc.stdout

    labels = next(raw.glob("t10k-labels-idx1-ubyte*"))
    labels.write_bytes(labels.read_bytes()[:-10])
    said = _error(_evaluate([str(folder), "--data-root", str(test_only)], tmp_path, data_dir))
    assert f"Data file {labels}" in said
    assert f"Delete it and run `cvsweep data fetch mnist --root {test_only}`" in said


def test_predict_takes_a_read_only_numpy_array_without_a_warning(trained, tmp_path, data_dir):
    """Images from np.frombuffer or a read-only memmap: no torch warning about writing them."""
    _, folder, _, _ = trained
    script = (
        "import numpy as np\n"
        "from cvsweep.data import load_raw\n"
        "from cvsweep.saved_model import load_model\n"
        f"saved = load_model({str(folder)!r})\n"
        f"test = load_raw({str(data_dir)!r}, 'mnist')['test']\n"
        "images = np.frombuffer(test.images[:100].numpy().tobytes(), np.uint8)\n"
        "images = images.reshape(100, 28, 28)\n"
        "assert not images.flags.writeable\n"
        "same = saved.predict(images).equal(saved.predict(test.images[:100]))\n"
        "print('same predictions' if same else 'other predictions')\n"
    )
    proc = run_python(["-W", "default", "-c", script], tmp_path, data_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "same predictions\n"
    assert "not writable" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
