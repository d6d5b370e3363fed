"""`cvsweep evaluate SOURCE`: a saved model's test accuracy, measured again from its files.

It shows that `model.pth` is the model the run reported: the weights are loaded on the
architecture of the run's logged config and scored on the same test images, with the same
layout and precision the run evaluated with, and the result is set beside the logged number.
"""

from __future__ import annotations

import argparse
import sys

import torch

from .config import ConfigError
from .data import DATASETS, DataError, load_raw, to_device
from .engine import evaluate
from .runtime import configure_threads, device_name, resolve_device, speed_settings
from .saved_model import SavedModelError, load_model
from .store_errors import EXIT_USER_ERROR, StoreError
from .tracking import TrackingError


def evaluate_main(args: argparse.Namespace) -> int:
    """Exit 0 with the accuracy printed; 2 for a source, store or data the user must fix."""
    try:
        device = resolve_device(args.device)
        saved = load_model(args.source, device=device, tracking_uri=args.tracking_uri)
        cfg = saved.cfg
        configure_threads(int(cfg.trainer.num_threads))
        root = args.data_root or str(cfg.dataset.root)
        limit = None if args.all else cfg.dataset.test_limit
        data = to_device(
            load_raw(root, str(cfg.dataset.name)),
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
    if speed.channels_last:
        saved.model.to(memory_format=torch.channels_last)
    loss, acc = evaluate(
        saved.model,
        data.test_x,
        data.test_y,
        int(cfg.trainer.eval_batch_size),
        channels_last=speed.channels_last,
        bf16=speed.bf16,
    )
    n, total = len(data.test_y), DATASETS[str(cfg.dataset.name)].test_count
    images = f"all {total}" if n == total else f"the first {n} of the {total}"
    print(
        f"{saved.source}: {cfg.model.name} trained on {cfg.dataset.name}, optimizer "
        f"{cfg.optimizer.name}, augment {cfg.augment.name}, schedule {cfg.schedule.name}"
    )
    print(
        f"test accuracy {100 * float(acc):.2f}%  (loss {float(loss):.4f}) on {images} "
        f"{cfg.dataset.name} test images, on {device_name(device)}"
    )
    if saved.logged_test_acc is not None and limit == cfg.dataset.test_limit:
        logged = 100 * float(saved.logged_test_acc)
        same = "the same" if abs(logged - 100 * float(acc)) < 0.005 else "not the same"
        print(f"the run logged {logged:.2f}% on these images: {same}")
    return 0
