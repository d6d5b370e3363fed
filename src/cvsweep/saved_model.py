"""A trained model back from its job folder or its MLflow run, ready to classify images.

`model.pth` holds only weights. The architecture and the input normalization they were trained
with are in the job's logged config, so the model is rebuilt from that config (not today's
defaults) and images are normalized the way its training data was.

    from cvsweep.saved_model import load_model
    saved = load_model("outputs/2026-11-29/15-47-22")   # a job folder, or an MLflow run id
    labels = saved.predict(images)                       # uint8 (N, 28, 28) or floats in [0, 1]
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig

from .checkpoint import CHECKPOINT_NAME, MODEL_NAME, cannot_load
from .identity import RESULT_FILE
from .model import ModelConfigError, build_model
from .rerun import RUN_ID, RerunError, logged_run, typed_config

CLASSES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion_mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}


class SavedModelError(ValueError):
    """A source that holds no usable trained model; the message names it and says why."""


@dataclass
class Recorded:
    """What the run recorded about its training, where known."""

    test_acc: float | None = None  # its final test accuracy (on its test_limit images)
    device: str | None = None  # the device type it trained on: "cpu" or "cuda"
    threads: int | None = None  # torch's thread count there


@dataclass
class SavedModel:
    """The rebuilt network (in eval mode) with the config it was trained under."""

    model: torch.nn.Module
    cfg: DictConfig
    source: str
    device: torch.device
    recorded: Recorded

    @property
    def classes(self) -> list[str]:
        """Class names by index, for the datasets cvsweep knows."""
        default = [str(i) for i in range(int(self.cfg.model.num_classes))]
        return CLASSES.get(str(self.cfg.dataset.name), default)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float32 on the model's device, normalized as the training data was.

        uint8 images are read as 0-255 and float images as 0-1 (what torchvision's ToTensor
        gives); a single image or a batch without its channel axis is accepted too.
        """
        x = torch.as_tensor(images)
        scale = 255.0 if x.dtype == torch.uint8 else 1.0
        # A copy: it is normalized in place below, and the caller's images stay as they were.
        x = x.to(device=self.device, dtype=torch.float32, copy=True).div_(scale)
        size = int(self.cfg.model.image_size)
        channels = int(self.cfg.model.in_channels)
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() == 3 and channels == 1 and tuple(x.shape[1:]) == (size, size):
            x = x.unsqueeze(1)
        if x.dim() != 4 or tuple(x.shape[1:]) != (channels, size, size):
            raise ValueError(
                f"images of shape {tuple(x.shape)}: this model takes "
                f"({channels}, {size}, {size}) images, as (N, {channels}, {size}, {size})"
                + (f", (N, {size}, {size}) or ({size}, {size})" if channels == 1 else "")
            )
        mean, std = float(self.cfg.dataset.mean), float(self.cfg.dataset.std)
        return x.sub_(mean).div_(std)

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(images))

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The class index of each image."""
        return self.logits(images).argmax(1)


def _read_config(path: Path, source: str) -> DictConfig:
    if not path.is_file():
        raise SavedModelError(
            f"{source} has no {path.name} beside its model (expected {path}): without the "
            "config it was trained with, the model's architecture is unknown."
        )
    try:
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("it is not a mapping of config groups")
        return typed_config(raw)
    except (yaml.YAMLError, ValueError, RerunError) as exc:
        raise SavedModelError(f"The config {path} of {source} cannot be read: {exc}") from None


def _rebuild(
    weights: Path, config: Path, source: str, device: torch.device, recorded: Recorded
) -> SavedModel:
    cfg = _read_config(config, source)
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
    except Exception as exc:
        raise SavedModelError(
            f"The model file {weights} cannot be read ({cannot_load(exc)}); it may be damaged "
            "or not a state_dict that cvsweep wrote."
        ) from None
    try:
        model = build_model(cfg.model)
    except ModelConfigError as exc:
        raise SavedModelError(
            f"The config {config} of {source} describes no model: {exc}"
        ) from None
    if not isinstance(state, dict):
        raise SavedModelError(f"The model file {weights} holds no state_dict ({type(state)}).")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise SavedModelError(
            f"The weights in {weights} do not fit the model its config {config} describes "
            f"({detail}): the two files are not from the same run."
        ) from None
    return SavedModel(model.to(device).eval(), cfg, source, device, recorded)


def _from_folder(path: Path, device: torch.device) -> SavedModel:
    folder = path.parent if path.is_file() else path
    weights = path if path.is_file() else folder / MODEL_NAME
    if not weights.is_file():
        stopped = (folder / CHECKPOINT_NAME).is_file()
        why = (
            "its job was stopped before training ended: running the same command again "
            "resumes it and writes the model"
            if stopped
            else "it does not look like a job folder (outputs/<date>/<time> or "
            "multirun/<date>/<time>/<job>)"
        )
        raise SavedModelError(f"{folder} holds no {MODEL_NAME}: {why}.")
    recorded = Recorded()
    with contextlib.suppress(OSError, ValueError, AttributeError):
        result = json.loads((folder / RESULT_FILE).read_text())
        recorded = Recorded(
            result.get("final_test_acc"), result.get("device"), result.get("num_threads")
        )
    config = folder / ".hydra" / "config.yaml"
    return _rebuild(weights, config, str(folder), device, recorded)


def _from_run(run_id: str, tracking_uri: str | None, device: torch.device) -> SavedModel:
    from .store_errors import open_client, quiet_downloads, store_failure
    from .tracking import with_retry

    quiet_downloads()
    client, uri = open_client(tracking_uri)

    def ask(call: Any) -> Any:
        """A store call; what goes wrong there becomes one paragraph naming the store."""
        try:
            return with_retry(call)
        except Exception as exc:
            raise store_failure(uri, exc) from None

    try:
        run = logged_run(client, uri, run_id)
    except RerunError as exc:  # an unknown id
        raise SavedModelError(str(exc)) from None
    if run.data.tags.get("cvsweep.sweep") == "true":
        raise SavedModelError(
            f"Run {run_id} is the parent run of a sweep, which holds its comparison, not a "
            f"model; `cvsweep compare {run_id}` lists the runs that have one."
        )
    names = {a.path for a in ask(lambda: client.list_artifacts(run_id))}
    if MODEL_NAME not in names:
        raise SavedModelError(
            f"Run {run_id} ({run.info.status}) has no {MODEL_NAME}: a run logs it when its "
            "training ends (a stopped run resumes when its command is run again)."
        )
    if "config" not in names:
        raise SavedModelError(
            f"Run {run_id} has no logged config/ artifacts, so its model cannot be rebuilt."
        )
    tags = run.data.tags
    threads = tags.get("num_threads", "")
    recorded = Recorded(
        run.data.metrics.get("final_test_acc"),
        "cpu" if tags.get("device") == "cpu" else ("cuda" if tags.get("device") else None),
        int(threads) if threads.isdigit() else None,
    )
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(ask(lambda: client.download_artifacts(run_id, MODEL_NAME, tmp)))
        config = Path(ask(lambda: client.download_artifacts(run_id, "config", tmp)))
        return _rebuild(weights, config / "config.yaml", f"run {run_id}", device, recorded)


def load_model(
    source: str | Path, *, device: str | torch.device = "cpu", tracking_uri: str | None = None
) -> SavedModel:
    """The model of a job folder (or its model.pth) or of an MLflow run id, on `device`.

    A run id is looked up in `tracking_uri` (default: $MLFLOW_TRACKING_URI or ./mlflow.db).
    """
    device = torch.device(device)
    path = Path(source)
    if path.exists():
        return _from_folder(path, device)
    if RUN_ID.match(str(source)):
        return _from_run(str(source), tracking_uri, device)
    raise SavedModelError(
        f"{str(source)!r} is neither a job folder (or a model.pth in one) nor an MLflow run id "
        "(32 hex digits, printed as `mlflow run:` at the end of a job)."
    )
