"""`cvsweep evaluate SOURCE`: a saved model's test accuracy, measured again from its files.

It shows that `model.pth` is the model the run reported: the weights are loaded on the
architecture of the run's logged config and scored on the same test images. On the device type
the run trained on (the default where this machine has one), with its thread count, layout and
precision, the number should be the logged one exactly; elsewhere other kernels round
differently, and the command says so rather than calling a small difference a mismatch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .config import ConfigError
from .data import DATASETS, DataError, load_raw, misread_root, to_device
from .engine import evaluate, ready_for
from .job_folder import data_root_for, launch_dir
from .optim import optimizers_text, plan_phases
from .runtime import device_name, keep_freed_memory, speed_settings
from .saved_model import SavedModel, SavedModelError, open_saved
from .store_errors import EXIT_USER_ERROR, StoreError
from .tracking import TrackingError


def _device(requested: str | None, trained_on: str | None) -> torch.device:
    """--device, else the device type the run trained on where this machine has it, else cpu."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise SavedModelError(
            "--device cuda: no CUDA device is available on this machine; leave --device out "
            "(the run's device where there is one, else the CPU) or give --device cpu."
        )
    if requested in ("cpu", "cuda"):
        return torch.device(requested)
    if requested == "auto" or trained_on == "cuda":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device("cpu")


def _data_root(saved: SavedModel, given: str | None) -> tuple[str, str | None]:
    """--data-root, else the run's dataset.root as it resolves now (a relative one taken from
    the folder the job was launched in, as training took it), else the root the run read;
    with a note where it is the last."""
    if given:
        problem = misread_root(given, str(saved.cfg.dataset.name), "--data-root", "--data-root ")
        if problem:
            raise DataError(problem)
        if not Path(given).expanduser().exists():  # a typo: fetching there would make it
            read = saved.recorded.data_root
            raise DataError(
                f"--data-root {given}: there is no such folder. Check the path"
                + (f" (the run read its data from {read})" if read else "")
                + "; leave --data-root out to read the run's own data root."
            )
        return given, None
    root = Path(str(saved.cfg.dataset.root))
    launched = None if root.is_absolute() else launch_dir(Path(saved.source))
    now = str(launched / root) if launched else str(root)
    return data_root_for(
        now, saved.recorded.data_root, str(saved.cfg.dataset.name), ("test",), "--data-root "
    )


def evaluate_main(args: argparse.Namespace) -> int:
    """Exit 0 with the accuracy printed; 2 for a source, store or data the user must fix."""
    try:
        saved = open_saved(args.source, device="cpu", tracking_uri=args.tracking_uri)
        device = _device(args.device, saved.recorded.device)
        cfg = saved.cfg
        if saved.recorded.threads and device.type == "cpu":
            torch.set_num_threads(saved.recorded.threads)  # float sums split as the run's were
        keep_freed_memory()
        limit = None if args.all else cfg.dataset.test_limit
        root, root_note = _data_root(saved, args.data_root)
        data = to_device(
            load_raw(root, str(cfg.dataset.name), splits=["test"]),
            float(cfg.dataset.mean),
            float(cfg.dataset.std),
            device,
            train_limit=0,
            test_limit=limit,
        )
    except (SavedModelError, StoreError, DataError, ConfigError, TrackingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    speed = speed_settings(cfg.trainer, device)
    model = ready_for(saved.model.to(device), speed)
    saved.device = device
    loss, acc = evaluate(
        model,
        data.test_x,
        data.test_y,
        int(cfg.trainer.eval_batch_size),
        channels_last=speed.channels_last,
        bf16=speed.bf16,
    )
    n, total = len(data.test_y), DATASETS[str(cfg.dataset.name)].test_count
    images = f"all {total}" if n == total else f"the first {n} of the {total}"
    for note in (saved.note, root_note):
        if note:
            print(f"note: {note}")
    print(
        f"{saved.source}: {cfg.model.name} trained on {cfg.dataset.name}, optimizer "
        f"{optimizers_text(plan_phases(cfg))}, augment {cfg.augment.name}, schedule {cfg.schedule.name}"
    )
    measured = 100 * float(acc)
    print(
        f"test accuracy {measured:.2f}%  (loss {float(loss):.4f}) on {images} "
        f"{cfg.dataset.name} test images, on {device_name(device)}"
    )
    if saved.recorded.test_acc is not None and limit == cfg.dataset.test_limit:
        logged = 100 * float(saved.recorded.test_acc)
        if saved.recorded.device in (None, device.type):
            same = "the same" if abs(logged - measured) < 0.005 else "not the same"
            print(f"the run logged {logged:.2f}% on these images: {same}")
        else:
            print(
                f"the run logged {logged:.2f}% on these images on {saved.recorded.device}, whose "
                f"kernels round differently ({measured - logged:+.2f} points here); "
                f"--device {saved.recorded.device} measures it as the run did"
            )
    return 0
