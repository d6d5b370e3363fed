"""A trained model back from its job folder or its MLflow run, ready to classify images.

`model.pth` holds only weights. The architecture and the input normalization they were trained
with are in the job's logged config, so the model is rebuilt from that config (not today's
defaults) and images are normalized the way its training data was.

    from cvsweep.saved_model import load_model
    saved = load_model("outputs/2026-11-29/15-47-22")   # a job folder, or an MLflow run id
    labels = saved.predict(images)                       # uint8 (N, 28, 28) or floats in [0, 1]
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from omegaconf import DictConfig

from .checkpoint import (
    damaged_member,
    damaged_problem,
    load_problem,
    quiet_load,
    read_training_state,
)
from .config import MAX_THREADS, ConfigError, validate
from .identity import RESULT_FILE, read_job_result
from .job_folder import (
    holds_run,
    job_config,
    launch_dir,
    launched_from,
    local_store_hint,
    setting,
    trained_root,
)
from .model import ModelConfigError, build_model
from .model_source import CHECKPOINT_NAME, MODEL_NAME, RUN_ID, SourceError, resolve_source
from .rerun import (
    RerunError,
    deleted_note,
    logged_run,
    typed_config,
)
from .runtime import speed_settings
from .store_option import ARGUMENT, option, python_api
from .user_errors import one_line

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


def _check_range(x: torch.Tensor, scale: float) -> None:
    """Pixel values outside 0..scale mean another convention (0-255 floats, or images that
    are already normalized): refused, since predictions on them are quietly worse."""
    if x.numel() == 0:
        return
    if x.dtype in (torch.uint16, torch.uint32, torch.uint64):
        x = x.to(torch.float64)  # torch has no min/max for these; 16-bit images are one kind
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError("pixel values include NaN or infinity: pass finite pixel values")
    low, high = float(x.min()), float(x.max())
    if low >= 0 and high <= scale:
        return
    kind = "integer images are read as 0-255" if scale > 1 else "float images are read as 0-1"
    raise ValueError(
        f"pixel values from {low:g} to {high:g}: {kind} (as torchvision's ToTensor gives) and "
        "normalized here with the training data's mean and std; pass uint8 images, or floats "
        "divided by 255, not images that are already normalized"
    )


class SavedModelError(ValueError):
    """A source that holds no usable trained model; the message names it and says why."""


@dataclass
class Recorded:
    """What the run recorded about its training, where known."""

    test_acc: float | None = None  # its final test accuracy (on its test_limit images)
    device: str | None = None  # the device type it trained on: "cpu" or "cuda"
    threads: int | None = None  # torch's thread count there
    data_root: Path | None = None  # the dataset.root it read, made absolute

    def __post_init__(self) -> None:
        """A value no run records (a hand-edited job_result.json: "abc" or 2.5 as an accuracy,
        100000 threads) is not known: it was compared as "250.00%", or crashed evaluate."""
        acc = self.test_acc
        number = isinstance(acc, int | float) and not isinstance(acc, bool)
        if not (number and 0.0 <= float(acc) <= 1.0):  # type: ignore[arg-type]
            self.test_acc = None
        if self.device not in ("cpu", "cuda"):
            self.device = None
        threads = self.threads
        if (
            isinstance(threads, bool)
            or not isinstance(threads, int)
            or not 1 <= threads <= MAX_THREADS
        ):
            self.threads = None


@dataclass
class SavedModel:
    """The rebuilt network (in eval mode) with the config it was trained under."""

    model: torch.nn.Module
    cfg: DictConfig
    source: str
    device: torch.device
    recorded: Recorded
    # A line to say (after "note: ") before the result, where the model is not simply the
    # one named: a skipped job's finished run, a training checkpoint's weights, a model.pth
    # that a failed or stopped job left.
    note: str | None = None

    @property
    def classes(self) -> list[str]:
        """Class names by index, for the datasets cvsweep knows."""
        default = [str(i) for i in range(int(self.cfg.model.num_classes))]
        return CLASSES.get(str(self.cfg.dataset.name), default)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float32 on the model's device, normalized as the training data was.

        Integer images (uint8, as the data files hold them) are read as 0-255 and float images
        as 0-1 (what torchvision's ToTensor gives); anything outside that range is refused, as
        it would be classified silently worse. A single image or a batch without its channel
        axis is accepted too.
        """
        if isinstance(images, np.ndarray) and not images.flags.writeable:
            # torch warns about read-only arrays (np.frombuffer, a read-only memmap), which
            # are never written here: they are copied below in any case.
            images = np.array(images, copy=True)
        try:
            x = torch.as_tensor(images)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"images of type {type(images).__name__}: pass a numpy array or a torch tensor "
                "of pixel values (uint8, or floats in [0, 1])"
            ) from None
        if x.dtype.is_complex:
            raise TypeError(f"images of dtype {x.dtype}: pass real pixel values")
        given = tuple(x.shape)
        integer = not (x.dtype.is_floating_point or x.dtype == torch.bool)
        scale = 255.0 if integer else 1.0
        _check_range(x, scale)
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
                f"images of shape {given}: this model takes "
                f"({channels}, {size}, {size}) images, as (N, {channels}, {size}, {size})"
                + (f", (N, {size}, {size}) or ({size}, {size})" if channels == 1 else "")
            )
        mean, std = float(self.cfg.dataset.mean), float(self.cfg.dataset.std)
        return x.sub_(mean).div_(std)

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Scores in the precision the run evaluated in on this device type (bf16 autocast on
        a CPU with native bf16 under trainer.precision=auto): in fp32 some images near a
        decision boundary flip, and the accuracy would not be the one the run logged."""
        x = self.normalize(images)
        bf16 = speed_settings(self.cfg.trainer, self.device).bf16
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            return self.model(x).float()

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """The class index of each image."""
        return self.logits(images).argmax(1)


def _read_config(path: Path, source: str, shown: str | None = None) -> DictConfig:
    shown = shown or str(path)
    if not path.is_file():
        raise SavedModelError(
            f"{source} has no {path.name} beside its model (expected {shown}): without the "
            "config it was trained with, the model's architecture is unknown."
        )
    try:
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError("it is not a mapping of config groups")
        lacking = [key for key in ("model", "dataset") if not isinstance(raw.get(key), dict)]
        if lacking:  # a file cut short, or edited: the schema would fill in nothing there
            raise ValueError(f"it has no {' and no '.join(lacking)} section")
        cfg = typed_config(raw)
    except (yaml.YAMLError, ValueError, RerunError) as exc:
        raise SavedModelError(
            f"The config {shown} of {source} cannot be read: {_yaml_problem(exc)}"
        ) from None
    try:  # the checks a run's config passed before it trained: an edit since would crash
        validate(cfg)
    except ConfigError as exc:
        raise SavedModelError(
            f"The config {shown} of {source} is not one cvsweep trains with (edited since the "
            f"run?): {exc}"
        ) from None
    return cfg


def _yaml_problem(exc: Exception) -> str:
    """PyYAML's message is several lines with a caret drawing; one line with the place."""
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, yaml.YAMLError) and mark is not None:
        problem = getattr(exc, "problem", None) or "not valid YAML"
        return f"it is not valid YAML ({problem} at line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def _load_state(weights: Path, what: str, device: torch.device) -> tuple[Any, str | None]:
    """The state_dict in `weights` and, for a training checkpoint given in a model's place, a
    line saying that its model weights are what is evaluated.

    Nothing is unpickled beyond tensors (and a checkpoint's numpy random state): a model file
    from elsewhere cannot run code here.
    """
    member = damaged_member(weights)
    if member is not None:
        raise SavedModelError(f"The {what} cannot be read: {damaged_problem(member)}.")
    try:
        with quiet_load():
            return torch.load(weights, map_location=device, weights_only=True), None
    except Exception as exc:
        state = read_training_state(weights, device)
        if state is None:
            problem = load_problem(exc, weights, expected=f"a {MODEL_NAME}")
            raise SavedModelError(f"The {what} cannot be read: {problem}.") from None
    return state["model"], (
        f"{weights} is a training checkpoint, not a {MODEL_NAME}: evaluating the model "
        f"weights it holds (at step {state['step']})"
    )


def _rebuild(
    weights: Path,
    config: Path,
    source: str,
    device: torch.device,
    recorded: Recorded,
    *,
    weights_shown: str | None = None,
    config_shown: str | None = None,
) -> SavedModel:
    """The model of `config` with the weights of `weights`; `*_shown` name the two files in
    messages where their paths mean nothing to the user (a run's downloaded artifacts)."""
    config_shown = config_shown or str(config)
    cfg = _read_config(config, source, config_shown)
    what = f"model file {weights}" if weights_shown is None else weights_shown
    weights_shown = str(weights) if weights_shown is None else f"the {weights_shown}"
    state, note = _load_state(weights, what, device)
    try:
        model = build_model(cfg.model)
    except ModelConfigError as exc:
        raise SavedModelError(
            f"The config {config_shown} of {source} describes no model: {exc}"
        ) from None
    if not isinstance(state, dict):
        raise SavedModelError(
            f"The {what} holds no state_dict ({type(state).__name__}): it is not a "
            f"{MODEL_NAME} that cvsweep wrote."
        )
    unnamed = [key for key in state if not isinstance(key, str)]
    if unnamed:  # torch fails on one with "'int' object has no attribute 'startswith'"
        raise SavedModelError(
            f"The {what} holds entries that are not parameter names ({unnamed[0]!r}): it is not "
            f"a {MODEL_NAME} that cvsweep wrote."
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])
        raise SavedModelError(
            f"The weights in {weights_shown} do not fit the model its config {config_shown} "
            f"describes ({detail}): the two files are not from the same run."
        ) from None
    return SavedModel(model.to(device).eval(), cfg, source, device, recorded, note)


def _why_no_model(folder: Path, result: dict[str, Any] | None) -> str:
    """Why a folder has no model.pth, from what its job recorded: how it ended, what it kept."""
    checkpoint = folder / CHECKPOINT_NAME
    kept = checkpoint.is_file()
    score_it = f"`cvsweep evaluate {checkpoint}` scores the weights it holds"
    status = result.get("status") if result else None
    run_id = result.get("run_id") if result else None
    if status == "FAILED":
        error = one_line(str(result.get("error") or "") if result else "") or "no reason recorded"
        why = f"its job FAILED: {error}"
        traceback_file = folder / "traceback.txt"
        if traceback_file.is_file():
            why += f" (traceback: {traceback_file})"
        if kept:
            return f"{why}. Its last checkpoint {checkpoint} was kept: {score_it}"
        if "No weights were saved" in error:
            return why
        return f"{why}. No weights were kept"
    if status == "KILLED" or (status is None and kept):
        if kept and status == "KILLED" and run_id:
            # A default run folder is named by the time of the launch: the resumed job's
            # model is in the new folder, which its run id finds.
            return (
                f"its job (run {run_id}) was stopped before training ended: running the same "
                "command again resumes that run, in the job folder of that command, and "
                f"`cvsweep evaluate {run_id}` then scores its model ({score_it} meanwhile)"
            )
        if kept and status == "KILLED":
            return (
                "its job was stopped before training ended, and it was not tracked, so "
                f"nothing resumes it ({score_it})"
            )
        if kept:
            return (
                "its job was stopped before training ended: running the same command again "
                f"resumes it and writes the model (meanwhile {score_it})"
            )
        return (
            "its job was stopped before training ended, before any weights were saved: "
            "running the same command again trains it"
        )
    if status == "FINISHED":
        if str(setting(job_config(folder), "trainer", "shapes_only")) == "True":
            return (
                "its job only reported the model's shapes (trainer.shapes_only=true), training none"
            )
        why = "its job FINISHED, but its model.pth has been moved or deleted since"
        if kept:
            why += f"; its checkpoint holds the final weights: `cvsweep evaluate {checkpoint}`"
        if run_id:
            why += f"; `cvsweep evaluate {run_id}` evaluates the copy logged to its run"
        return why
    if status is not None:
        return f"its job ended {status} without one"
    if (folder / ".hydra" / "config.yaml").is_file():
        return (
            f"its job recorded no result ({RESULT_FILE}): it stopped before training, on an "
            "error its command printed (a config or data error), or it is still running, or "
            "it was killed outright"
        )
    jobs = _jobs_under(folder)
    if jobs:
        shown = ", ".join(str(job) for job in jobs[:3]) + (", ..." if len(jobs) > 3 else "")
        return (
            f"it is not a job folder but a folder of {len(jobs)}, as a sweep's folder is: "
            f"give one of them ({shown})"
        )
    return (
        "it does not look like a job folder (outputs/<date>/<time> or multirun/<date>/<time>/<job>)"
    )


def _jobs_under(folder: Path) -> list[Path]:
    """The job folders in a sweep's folder (or a date's, or multirun/ itself), nearest level
    first: a user who names the sweep they ran is told which folders hold its models."""
    for depth in range(1, 4):
        found = sorted(
            config.parent.parent for config in folder.glob("*/" * depth + ".hydra/config.yaml")
        )
        if found:
            return found
    return []


def _unfinished_note(folder: Path, result: dict[str, Any] | None) -> str | None:
    """For a model.pth its job left without finishing: that it is not the end of training."""
    status = result.get("status") if result else None
    if status == "FAILED":
        error = one_line(str(result.get("error") or "") if result else "", 300)
        return (
            f"the job of {folder} FAILED ({error or 'no reason recorded'}): its "
            f"{MODEL_NAME} holds the weights of its last finished epoch, not of a finished "
            "training"
        )
    if status == "KILLED":
        return (
            f"the job of {folder} was stopped before training ended: its {MODEL_NAME} "
            "holds the weights of its last finished epoch (running its command again resumes it)"
        )
    return None


def _store_of(folder: Path, tracking_uri: str | None) -> str | None:
    """The store a job of this folder logged to: --tracking-uri, else its config's
    tracking.uri as training resolved it (from the folder it was launched in)."""
    from .tracking import TrackingError, resolve_uri

    if tracking_uri:
        return tracking_uri
    uri = setting(job_config(folder), "tracking", "uri")
    if not isinstance(uri, str) or "${" in uri:
        uri = None  # the default store of the launch folder (or $MLFLOW_TRACKING_URI)
    try:
        return resolve_uri(uri, launch_dir(folder))
    except TrackingError:
        return None


def _skipped(
    folder: Path, run_id: str, device: torch.device, tracking_uri: str | None
) -> SavedModel:
    """A job skipped as identical to a finished run: that run's model, said so in its note."""
    from .store_errors import StoreError
    from .tracking import TrackingError

    uri = _store_of(folder, tracking_uri)
    skipped = f"its job was skipped as identical to finished run {run_id}"
    try:
        if uri is None or not RUN_ID.match(run_id):
            raise SavedModelError("the store it was logged to is not known")
        saved = _from_run(run_id, uri, device, prefer_job_folder=True)
    except (SavedModelError, StoreError, TrackingError) as exc:
        raise SavedModelError(
            f"{folder} holds no {MODEL_NAME}: {skipped}, whose model is the one to evaluate "
            f"({_load_run(run_id)}, STORE being the store that run was logged to), but it "
            f"cannot be loaded from {uri or 'its store'}: {exc}"
        ) from None
    model = f"{saved.source}/{MODEL_NAME}" if Path(saved.source).is_dir() else saved.source
    saved.note = f"{folder}: {skipped}; evaluating that run's model ({model})"
    return saved


def _load_run(run_id: str) -> str:
    """How the user loads a run's model from a store they name: the command or the call."""
    if option() == ARGUMENT:
        return f"`load_model({run_id!r}, tracking_uri=STORE)`"
    return f"`cvsweep evaluate {run_id} --tracking-uri STORE`"


def _from_folder(path: Path, device: torch.device, tracking_uri: str | None = None) -> SavedModel:
    folder = path.parent if path.is_file() else path
    weights = path if path.is_file() else folder / MODEL_NAME
    result = read_job_result(folder)
    skipped = result and result.get("status") == "SKIPPED" and not result.get("trained_here")
    if skipped and result.get("run_id") and path == folder:
        # A skipped job trained nothing: a model.pth beside it is an earlier job's, from
        # before the folder was used again (a fixed hydra.run.dir), not the finished run's.
        return _skipped(folder, str(result["run_id"]), device, tracking_uri)
    if not weights.is_file():
        raise SavedModelError(f"{folder} holds no {MODEL_NAME}: {_why_no_model(folder, result)}.")
    recorded = Recorded()
    if result is not None:
        threads = result.get("num_threads")
        recorded = Recorded(
            result.get("final_test_acc"),
            result.get("device"),
            threads if isinstance(threads, int) else None,
            trained_root(result.get("data_root"), launch_dir(folder)),
        )
    config = folder / ".hydra" / "config.yaml"
    saved = _rebuild(weights, config, str(folder), device, recorded)
    if saved.note is None:
        saved.note = _unfinished_note(folder, result)
    return saved


def _why_no_artifact(run: Any) -> str:
    """Why a run logged no model.pth, for its status (nothing to add for a finished run), and
    its job folder, where that may have one; to follow "Run ID (STATUS) has no model.pth"."""
    status, tags = run.info.status, run.data.tags
    folder = tags.get("output_dir")
    here = ""
    if folder:
        if (Path(folder) / MODEL_NAME).is_file():
            here = f"; its job folder {folder} has one: `cvsweep evaluate {folder}`"
        elif Path(folder).is_dir():
            here = f"; its job folder {folder} has none either"
        else:
            here = (
                f"; its job folder {folder} (named in its tags) may still have it, on the "
                "machine that ran it"
            )
    if str(run.data.params.get("trainer.shapes_only")).lower() == "true":
        return ": it only reported the model's shapes (trainer.shapes_only=true), training none"
    if status == "FINISHED":
        return here
    if status == "RUNNING":
        return f": it is still running, and logs its {MODEL_NAME} when its training ends"
    if status == "KILLED":
        return (
            ": it was stopped before its training ended (a stopped run resumes when its "
            f"command is run again){here}"
        )
    if status == "FAILED":
        reason = one_line(tags.get("failure_reason") or "no reason recorded", 300)
        return f": it FAILED ({reason}), and a failed run logs no {MODEL_NAME}{here}"
    return f": a run logs it when its training ends{here}"


def _from_run(
    run_id: str, tracking_uri: str | None, device: torch.device, prefer_job_folder: bool = False
) -> SavedModel:
    """The model logged to a run; with prefer_job_folder, the run's own job folder's model
    where that is on this machine (a skipped job's finished run: nothing to download)."""
    from .store_errors import StoreError, open_client, quiet_downloads, store_failure
    from .tracking import store_flag, with_retry

    quiet_downloads()
    hint = "" if tracking_uri else local_store_hint(run_id)
    client, uri = open_client(tracking_uri, missing_hint=hint)

    def ask(call: Any) -> Any:
        """A store call; what goes wrong there becomes one paragraph naming the store."""
        try:
            return with_retry(call)
        except StoreError:  # already one paragraph (served_artifacts)
            raise
        except Exception as exc:
            raise store_failure(uri, exc) from None

    try:
        run = logged_run(client, uri, run_id, local_store_hint(run_id, uri) if hint else "")
    except RerunError as exc:  # an unknown id
        raise SavedModelError(str(exc)) from None
    if run.data.tags.get("cvsweep.sweep") == "true":
        raise SavedModelError(
            f"Run {run_id} is the parent run of a sweep, which holds its comparison, not a "
            f"model; `cvsweep compare {run_id}{store_flag(uri)}` lists the runs that have one."
        )
    folder = run.data.tags.get("output_dir")
    if (
        prefer_job_folder
        and folder
        and (Path(folder) / MODEL_NAME).is_file()
        and holds_run(Path(folder), run_id)
    ):
        return _from_folder(Path(folder), device)
    names = {a.path for a in ask(lambda: client.list_artifacts(run_id))}
    if MODEL_NAME not in names:
        raise SavedModelError(
            f"Run {run_id} ({run.info.status}) has no {MODEL_NAME} artifact{_why_no_artifact(run)}."
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
        recorded.data_root = trained_root(
            run.data.params.get("dataset.root"), launched_from(config)
        )
        saved = _rebuild(
            weights,
            config / "config.yaml",
            f"run {run_id}",
            device,
            recorded,
            weights_shown=f"{MODEL_NAME} artifact of run {run_id}",
            config_shown="artifact config/config.yaml",
        )
    deleted = deleted_note(run)
    if deleted:
        saved.note = f"{saved.note}; {deleted}" if saved.note else deleted
    return saved


def _wanted_device(device: str | torch.device) -> torch.device:
    """The device to load on, refused by its name: torch blamed the model file for a missing
    GPU ("cannot be read: Attempting to deserialize object on a CUDA device")."""
    try:
        wanted = torch.device(device)
    except (RuntimeError, TypeError):
        raise SavedModelError(
            f"device={device!r} is not a device a model loads on: use 'cpu' or 'cuda' "
            "('cuda:1' for a second GPU)."
        ) from None
    if wanted.type not in ("cpu", "cuda"):
        raise SavedModelError(f"device={device!r}: a saved model loads on 'cpu' or 'cuda'.")
    if wanted.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SavedModelError(
                f"device={device!r}: no CUDA device is available on this machine; use 'cpu'."
            )
        if (wanted.index or 0) >= count:
            raise SavedModelError(
                f"device={device!r}: this machine has {count} CUDA device(s), cuda:0 to "
                f"cuda:{count - 1}."
            )
    return wanted


def _given_store(tracking_uri: str | Path | None) -> str | None:
    """tracking_uri as the command line reads --tracking-uri: `file:./x` is a malformed store
    URI to be named as such, not a path to a file in a folder called `file:.`. A Path object
    is a path whatever its name."""
    if isinstance(tracking_uri, Path):
        return f"sqlite:///{tracking_uri.resolve()}"
    if tracking_uri is not None and not isinstance(tracking_uri, str):
        raise SavedModelError(
            f"tracking_uri={tracking_uri!r} is not a store: give a store URI "
            "('sqlite:///path/to/mlflow.db', 'http://HOST:PORT') or the path of an mlflow.db."
        )
    from .store_errors import store_uri_or_path

    return store_uri_or_path(tracking_uri) if tracking_uri else None


def load_model(
    source: str | Path,
    *,
    device: str | torch.device = "cpu",
    tracking_uri: str | Path | None = None,
) -> SavedModel:
    """The model of a job folder (or its model.pth) or of an MLflow run id, on `device`.

    A run id is looked up in `tracking_uri` (default: $MLFLOW_TRACKING_URI or ./mlflow.db; the
    path of an mlflow.db names that file, as --tracking-uri does on the command line). A
    job folder whose job was skipped as identical to a finished run gives that run's model
    (looked up in `tracking_uri`, else in the store the job was configured with); `note` says so.
    """
    with python_api():
        return open_saved(source, device=device, tracking_uri=tracking_uri)


def open_saved(
    source: str | Path,
    *,
    device: str | torch.device = "cpu",
    tracking_uri: str | Path | None = None,
) -> SavedModel:
    """`load_model` with its messages naming the command's --tracking-uri (`cvsweep evaluate`)."""
    tracking_uri = _given_store(tracking_uri)
    device = _wanted_device(device)
    try:
        found = resolve_source(source)
    except SourceError as exc:
        raise SavedModelError(str(exc)) from None
    if isinstance(found, Path):
        return _from_folder(found, device, tracking_uri)
    return _from_run(found, tracking_uri, device)
