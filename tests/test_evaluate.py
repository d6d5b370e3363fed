"""`cvsweep evaluate` and `load_model`: a saved model.pth is the model its run reported."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cvsweep.config import ModelConfig
from cvsweep.data import load_raw
from cvsweep.model import build_model
from cvsweep.saved_model import load_model

from .conftest import QUICK, REPO, cli_env, db_uri, run_cvsweep, run_train

try:
    CUDA = torch.cuda.is_available()
except Exception:  # a broken driver: no GPU to test with
    CUDA = False


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """One tracked quick run: (launch folder, job folder, run id, printed final accuracy)."""
    tmp = tmp_path_factory.mktemp("evaluate")
    proc = run_train([*QUICK, f"tracking.uri={db_uri(tmp)}"], tmp, data_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = Path(re.search(r"job folder: (\S+)", proc.stdout).group(1))
    run_id = re.search(r"mlflow run: (\w+)", proc.stdout).group(1)
    acc = re.search(r"final test accuracy: ([\d.]+)%", proc.stdout).group(1)
    return tmp, folder, run_id, acc


def _evaluate(args: list[str], cwd: Path, data: Path):
    return run_cvsweep(["evaluate", *args], cwd, cli_env(data), timeout=120)


def test_evaluate_measures_the_logged_accuracy_again(trained, data_dir):
    tmp, folder, run_id, acc = trained
    for source in (
        [str(folder)],
        [str(folder / "model.pth")],
        [run_id, "--tracking-uri", db_uri(tmp)],
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
    # fp32 here; the run evaluated in its training precision (bf16 where the CPU has it)
    assert abs(accuracy - float(acc)) < 1.0, (accuracy, acc)
    assert saved.predict(images[0]).shape == (1,)
    with pytest.raises(ValueError, match=r"this model takes \(1, 28, 28\) images"):
        saved.predict(torch.zeros(2, 3, 28, 28))


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
    assert "holds no model.pth: its job was stopped before training ended" in error_of(str(stopped))

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

    assert "is neither a job folder" in error_of("outputs/nope")
    unknown = "0123456789abcdef0123456789abcdef"
    said = error_of(unknown, "--tracking-uri", db_uri(tmp))
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
