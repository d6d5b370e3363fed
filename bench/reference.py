"""The plain training loop as a course assignment writes it: the baseline cvsweep is measured against.

torchvision datasets and transforms, a shuffling ``DataLoader``, an eager loop that reads
``loss.item()`` and the correct count every step, and one evaluation on the test set at the end.
Only what must be identical for a fair comparison comes from the project: the model is built by
``cvsweep.model.build_model`` from ``conf/model/<name>.yaml`` (the same architecture, and with
the same seed the same initial weights), and normalization, augmentation and optimizer settings
are read from the same ``conf/`` files that cvsweep composes.

The data is prepared offline: the verified ``.gz`` files of ``$CVSWEEP_DATA`` are decompressed
(through cvsweep's hash check) into a temporary root in torchvision's layout, and the datasets
are opened with ``download=False``; nothing is written next to the source files.

Run it alone with ``python -m bench.reference --batch-size 64 --augment rot_flip``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

TORCHVISION_CLASSES: dict[str, type[datasets.MNIST]] = {
    "mnist": datasets.MNIST,
    "fashion_mnist": datasets.FashionMNIST,
}


@dataclass
class ReferenceConfig:
    """What one reference run needs; names mirror cvsweep's config keys."""

    dataset: str = "mnist"
    model: str = "cnn"
    optimizer: str = "adam"
    lr: float | None = None  # None: the optimizer group's lr from conf/
    augment: str = "none"
    batch_size: int = 64
    epochs: int = 1
    train_limit: int | None = None
    num_workers: int = 2
    eval_batch_size: int = 1000
    seed: int = 0
    device: str = "cpu"


@dataclass
class ReferenceResult:
    epoch_times: list[float] = field(default_factory=list)
    train_loss: float = float("nan")
    train_acc: float = float("nan")
    test_loss: float = float("nan")
    test_acc: float = float("nan")
    dataset_s: float = 0.0  # torchvision dataset construction (reads the raw IDX files)
    eval_s: float = 0.0
    steps_per_epoch: int = 0
    images_per_epoch: int = 0


def data_dir() -> Path:
    """$CVSWEEP_DATA, or the shared folder next to the checkout as the tests use it."""
    env = os.environ.get("CVSWEEP_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def prepare_root(dataset: str, dest: Path, source: Path | None = None) -> Path:
    """A torchvision root under ``dest`` holding the verified, decompressed IDX files.

    torchvision 0.29 opens ``<root>/<Class>/raw/<stem>`` (not the ``.gz``), and with
    ``download=False`` it never touches the network; cvsweep's ``read_verified`` checks the pinned
    SHA-256 on the way, so both sides train on provably the same bytes.
    """
    from cvsweep.data import DATASETS, SPLIT_FILES, locate, read_verified

    source = data_dir() if source is None else source
    spec = DATASETS[dataset]
    raw = dest / spec.folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stems in SPLIT_FILES.values():
        for stem in stems:
            target = raw / stem
            if target.is_file():
                continue
            path = locate(source, dataset, stem)
            if path is None:
                raise FileNotFoundError(f"{dataset}: {stem}(.gz) not found under {source}")
            target.write_bytes(read_verified(path, spec.sha256[stem]))
    return dest


def conf_node(group: str, name: str) -> Any:
    """One option of a config group as plain OmegaConf (the schema defaults list dropped)."""
    node = OmegaConf.load(CONF / group / f"{name}.yaml")
    if "defaults" in node:
        node.pop("defaults")
    return node


def build_reference_model(name: str = "cnn") -> nn.Module:
    """Literally cvsweep's architecture: conf/model/<name>.yaml over the structured schema."""
    from cvsweep.config import ModelConfig
    from cvsweep.model import build_model

    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), conf_node("model", name))
    return build_model(cfg)


def build_transforms(dataset: str, augment: str) -> tuple[Any, Any]:
    """(train, test) transforms: per-image PIL augmentation, ToTensor and Normalize."""
    ds = conf_node("dataset", dataset)
    aug = conf_node("augment", augment)
    normalize = [transforms.ToTensor(), transforms.Normalize((ds.mean,), (ds.std,))]
    train: list[Any] = []
    if float(aug.flip_p) > 0:
        train.append(transforms.RandomHorizontalFlip(p=float(aug.flip_p)))
    if float(aug.degrees) > 0:
        train.append(transforms.RandomRotation(float(aug.degrees)))
    return transforms.Compose(train + normalize), transforms.Compose(normalize)


def build_optimizer(model: nn.Module, name: str, lr: float | None) -> torch.optim.Optimizer:
    """torch.optim with the hyper-parameters of conf/optimizer/<name>.yaml (default flags)."""
    opt = conf_node("optimizer", name)
    lr = float(opt.lr) if lr is None else lr
    wd = float(opt.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=lr,
            momentum=float(opt.momentum),
            nesterov=bool(opt.nesterov),
            weight_decay=wd,
        )
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(
            model.parameters(),
            lr=lr,
            betas=(float(opt.betas[0]), float(opt.betas[1])),
            eps=float(opt.eps),
            weight_decay=wd,
        )
    raise ValueError(f"reference optimizer {name!r} not supported (sgd, adam, adamw)")


def make_loaders(cfg: ReferenceConfig, root: Path) -> tuple[DataLoader, DataLoader, float]:
    """(train loader, test loader, seconds spent opening the datasets)."""
    cls = TORCHVISION_CLASSES[cfg.dataset]
    train_tf, test_tf = build_transforms(cfg.dataset, cfg.augment)
    t0 = time.perf_counter()
    train_set: Any = cls(str(root), train=True, transform=train_tf, download=False)
    test_set = cls(str(root), train=False, transform=test_tf, download=False)
    dataset_s = time.perf_counter() - t0
    if cfg.train_limit is not None and cfg.train_limit < len(train_set):
        train_set = Subset(train_set, range(cfg.train_limit))
    train_loader = DataLoader(
        train_set, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers
    )
    test_loader = DataLoader(
        test_set, batch_size=cfg.eval_batch_size, shuffle=False, num_workers=cfg.num_workers
    )
    return train_loader, test_loader, dataset_s


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """(mean loss, accuracy) over the whole loader, the usual no_grad loop."""
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            loss_sum += F.cross_entropy(outputs, labels, reduction="sum").item()
            correct += (outputs.argmax(1) == labels).sum().item()
            total += labels.size(0)
    model.train()
    return loss_sum / total, correct / total


def train_reference(cfg: ReferenceConfig, root: Path) -> ReferenceResult:
    """Train and evaluate once; epoch times cover the loop only (loader start-up included)."""
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)  # same seed, same build order: same initial weights as cvsweep
    model = build_reference_model(cfg.model).to(device)
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr)
    criterion = nn.CrossEntropyLoss()
    train_loader, test_loader, dataset_s = make_loaders(cfg, root)
    result = ReferenceResult(
        dataset_s=dataset_s,
        steps_per_epoch=len(train_loader),
        images_per_epoch=len(train_loader.dataset),  # type: ignore[arg-type]
    )

    model.train()
    for _epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        running_loss, correct, seen = 0.0, 0, 0
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            _, predicted = torch.max(outputs, 1)
            correct += (predicted == labels).sum().item()
            seen += labels.size(0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        result.epoch_times.append(time.perf_counter() - t0)
        result.train_loss = running_loss / max(len(train_loader), 1)
        result.train_acc = correct / max(seen, 1)

    t0 = time.perf_counter()
    result.test_loss, result.test_acc = evaluate(model, test_loader, device)
    result.eval_s = time.perf_counter() - t0
    return result


def main(argv: list[str] | None = None) -> None:
    defaults = ReferenceConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default=defaults.dataset, choices=sorted(TORCHVISION_CLASSES))
    p.add_argument("--model", default=defaults.model)
    p.add_argument("--optimizer", default=defaults.optimizer, choices=["adam", "adamw", "sgd"])
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--augment", default=defaults.augment)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--num-workers", type=int, default=defaults.num_workers)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--device", default=defaults.device)
    args = p.parse_args(argv)
    cfg = ReferenceConfig(
        dataset=args.dataset,
        model=args.model,
        optimizer=args.optimizer,
        lr=args.lr,
        augment=args.augment,
        batch_size=args.batch_size,
        epochs=args.epochs,
        train_limit=args.train_limit,
        num_workers=args.num_workers,
        seed=args.seed,
        device=args.device,
    )
    with tempfile.TemporaryDirectory(prefix="cvsweep-ref-") as tmp:
        root = prepare_root(cfg.dataset, Path(tmp))
        result = train_reference(cfg, root)
    print(asdict(cfg))
    print(asdict(result))


if __name__ == "__main__":
    main()
