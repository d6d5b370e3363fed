"""Typed config schemas and the value checks that types alone cannot express.

Hydra type-checks every group against these dataclasses (registered in the ConfigStore), so a
wrong type or an unknown key fails at compose time with Hydra's own message. `validate` then
catches keys added with `+` that no schema defines (Hydra accepts those) and values that are
well-typed but meaningless (lr <= 0, batch_size < 1, ...) before any data is read or any
tracking run exists.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .identity import GROUPS


class ConfigError(ValueError):
    """A config value that makes no sense; the message names the key, the value and the rule."""


@dataclass
class DatasetConfig:
    name: str = MISSING
    root: str = "data"
    train_limit: int | None = None
    # First N test images only: for quick looks and tests; reported accuracy then uses N images.
    test_limit: int | None = None
    mean: float = 0.0
    std: float = 1.0


@dataclass
class LayerConfig:
    name: str = MISSING
    kind: str = MISSING  # conv | maxpool | linear
    out: int = 0
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    activation: str | None = None


@dataclass
class ModelConfig:
    name: str = MISSING
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    layers: list[LayerConfig] = field(default_factory=list)


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    weight_decay: float = 0.0


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = 0.0
    nesterov: bool = False


@dataclass
class AdamConfig(OptimizerConfig):
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class AdamWConfig(AdamConfig):
    weight_decay: float = 0.01


@dataclass
class RMSpropConfig(OptimizerConfig):
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0


OPTIMIZER_SCHEMAS: dict[str, type[OptimizerConfig]] = {
    "sgd": SGDConfig,
    "adam": AdamConfig,
    "adamw": AdamWConfig,
    "rmsprop": RMSpropConfig,
}


@dataclass
class AugmentConfig:
    name: str = MISSING
    flip_p: float = 0.0
    degrees: float = 0.0


@dataclass
class PhaseConfig:
    epochs: int = MISSING
    # Keys merged over the run's optimizer group; a different `name` switches optimizer type.
    optimizer: dict[str, Any] | None = None


@dataclass
class ScheduleConfig:
    name: str = MISSING
    scheduler: str = "constant"  # constant | step | cosine | onecycle
    step_size: int = 1
    gamma: float = 0.7
    min_lr: float = 0.0
    max_lr_factor: float = 4.0
    pct_start: float = 0.25
    phases: list[PhaseConfig] = field(default_factory=list)


@dataclass
class TrainerConfig:
    epochs: int = 3
    batch_size: int = 64
    log_every: int = 1000
    eval_batch_size: int = 500
    device: str = "auto"
    num_threads: int = 0
    deterministic: bool = False
    cuda_graphs: str = "auto"  # auto | on | off
    channels_last: str = "auto"  # auto (on for CPU) | on | off
    precision: str = "auto"  # auto (bf16 where the CPU has it natively, else fp32) | fp32 | bf16
    cudnn_benchmark: str = "off"  # on: time cuDNN's algorithms per shape (CUDA) | off
    split_bias_grad: str = "auto"  # auto (on for CUDA) | on | off: conv bias gradients
    progress: str = "auto"  # auto | on | off
    checkpoint_every_epoch: bool = True
    report_batch_size: int = 16
    # Print and log the shape report, train nothing (the assignment's first question).
    shapes_only: bool = False
    # Raise an error at this global mini-batch: exercises the failure path of runs and sweeps.
    fault_at_step: int | None = None


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None
    experiment: str = "cvsweep"
    skip_finished: bool = True
    required: bool = True
    parent_run_id: str | None = None


@dataclass
class TrainConfig:
    dataset: DatasetConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    augment: AugmentConfig = MISSING
    schedule: ScheduleConfig = MISSING
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    # Free-form notes carried by experiment presets (shown in reports, never used in training).
    experiment: dict[str, Any] | None = field(default_factory=dict)


def optimizer_schema_name(name: str) -> str:
    """ConfigStore name of an optimizer's schema, as conf/optimizer/<name>.yaml extends it."""
    return f"optimizer_{name}_schema"


def register_schemas() -> None:
    """Put the schemas in Hydra's ConfigStore; conf/ files name them in their defaults lists.

    They are stored outside every config group (conf/optimizer/sgd.yaml extends
    `/optimizer_sgd_schema@_here_`), so Hydra neither lists them as options nor lets
    `optimizer=...` pick a bare schema.
    """
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for name, schema in OPTIMIZER_SCHEMAS.items():
        cs.store(name=optimizer_schema_name(name), node=schema)


# What each dataset's images and labels are: the model must take and predict exactly these.
DATASET_SHAPES: dict[str, tuple[int, int, int]] = {  # channels, image side, classes
    "mnist": (1, 28, 10),
    "fashion_mnist": (1, 28, 10),
}
DEVICES = ("auto", "cpu", "cuda")
SCHEDULERS = ("constant", "step", "cosine", "onecycle")
LAYER_KINDS = ("conv", "maxpool", "linear")
LAYER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
ACTIVATIONS = (None, "relu", "gelu", "tanh")
TRI_STATE = ("auto", "on", "off")
# torch takes seeds up to 2**64 - 1; a larger one stopped the run with an overflow traceback.
MAX_SEED = 2**64 - 1
# More threads than any CPU has: libgomp cannot create them all and the process crashes
# (a segmentation fault at 100000) instead of saying so.
MAX_THREADS = 1024


def feature_map_size(size: int, layer: Any) -> int:
    """Side of a conv or maxpool layer's output for a size x size input.

    Here, not in model.py, so a config is checked before any job starts (a sweep's included)
    without importing torch; build_model uses the same arithmetic. A maxpool stride of 1
    means torch's default, stride = kernel.
    """
    padded = size + 2 * int(layer.padding) - int(layer.kernel)
    if layer.kind == "conv":
        return padded // int(layer.stride) + 1
    return padded // maxpool_stride(layer) + 1


def maxpool_stride(layer: Any) -> int:
    """A maxpool's stride: 1, the schema's default, stands for torch's default, the kernel.

    So `{kind: maxpool, kernel: 2}` halves the image as the assignment's pools do; any other
    stride is taken as given. A pool sliding one pixel at a time is not expressible (no model
    here needs one); the shape report shows what each layer does.
    """
    return int(layer.stride) if layer.stride > 1 else int(layer.kernel)


# The shipped models' layer names, none of them an attribute of nn.Module (a test checks):
# validating them needs no torch import, which a refusal or a sweep's launcher would wait for.
_SHIPPED_LAYER_NAMES = frozenset({"conv1", "pool1", "conv2", "pool2", "conv3", "fc1", "fc2"})


def layer_name_taken(name: str) -> bool:
    """Is name a method or attribute of torch's modules ("forward", "training", "cuda")? A
    layer of that name could not be a submodule of the model."""
    if name in _SHIPPED_LAYER_NAMES:
        return False
    from torch import nn

    return hasattr(nn.Sequential(), name)


# Shipped schedules that are nothing but their phases: emptied, they would label a run wrongly.
PHASED_SCHEDULES = ("sgd_then_adam",)


def _require(ok: bool, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"Invalid config value {key}={value!r}: {rule}.")


def _require_tri_state(value: str, key: str) -> None:
    """auto, on or off; `key=false` arrives as the string 'False', so it is shown as typed and
    the word meant is named."""
    if value in TRI_STATE:
        return
    typed = {"True": "true", "False": "false"}.get(value)
    rule = "allowed: auto, on, off"
    if typed:
        rule += f" (for {typed}, write {key}={'on' if typed == 'true' else 'off'})"
    raise ConfigError(f"Invalid config value {key}={typed or repr(value)}: {rule}.")


def _field_names(schema: type) -> list[str]:
    return [f.name for f in dataclasses.fields(schema)]


def _optimizer_schema(name: Any, key: str = "optimizer.name") -> type[OptimizerConfig]:
    if name not in OPTIMIZER_SCHEMAS:
        raise ConfigError(
            f"Invalid config value {key}={name!r}: "
            f"allowed optimizers are {', '.join(OPTIMIZER_SCHEMAS)}."
        )
    return OPTIMIZER_SCHEMAS[name]


def _reject_unknown_optimizer_keys(name: str, keys: Iterable[Any], where: str) -> None:
    """`+optimizer.x=...` gets past Hydra's type check; name the key before it fails mid-run."""
    valid = _field_names(OPTIMIZER_SCHEMAS[name])
    for key in keys:
        if key not in valid:
            raise ConfigError(
                f"Unknown config key {where}.{key}: the {name} optimizer has no setting "
                f"{key!r}; valid keys for {name}: {', '.join(valid)}."
            )


def optimizer_config(
    base: DictConfig | dict, overrides: dict[str, Any] | None, where: str = "optimizer"
) -> DictConfig:
    """The optimizer settings of one phase: phase keys over the run's group, type-checked.

    A phase that names another optimizer starts from that optimizer's schema defaults rather
    than inheriting hyper-parameters that belong to a different algorithm. `where` is the
    config path of `overrides`, for messages.
    """
    base_dict = OmegaConf.to_container(base, resolve=True) if isinstance(base, DictConfig) else base
    over = dict(overrides or {})
    name = over.get("name", base_dict["name"])
    key = f"{where}.name" if "name" in over else "optimizer.name"
    schema = OmegaConf.structured(_optimizer_schema(name, key))
    start = base_dict if name == base_dict["name"] else {"name": name}
    _reject_unknown_optimizer_keys(name, start, "optimizer")
    _reject_unknown_optimizer_keys(name, over, where)
    try:
        merged = OmegaConf.merge(schema, start, over)
    except Exception as exc:  # omegaconf raises several types; all mean a bad key or type
        settings = {**start, **over}
        raise ConfigError(
            f"Invalid optimizer settings {settings!r} for {name}: {one_paragraph(exc)}."
        ) from None
    for field_name in _field_names(OPTIMIZER_SCHEMAS[name]):
        if OmegaConf.is_missing(merged, field_name):  # a phase that switches optimizer
            raise ConfigError(
                f"Missing config value {where}.{field_name}: {name} has no default "
                f"{field_name}, and a phase that switches to another optimizer takes none of "
                f"the run's settings; give it one with {where}.{field_name}=VALUE."
            )
    return merged


def _typed_nodes(node: Any, path: str) -> Iterator[tuple[str, DictConfig, type]]:
    """(path, node, schema) of each node that has a dataclass schema, reached through lists
    and through the fields its parent's schema defines.

    Free-form dicts (experiment notes, phase optimizer overrides) have no dataclass and pass.
    """
    if isinstance(node, ListConfig):
        for i in range(len(node)):
            yield from _typed_nodes(node._get_node(i), f"{path}.{i}")
        return
    schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    if schema is None or not dataclasses.is_dataclass(schema):
        return
    yield path, node, schema
    for name in _field_names(schema):
        if name in node and not OmegaConf.is_missing(node, name):
            yield from _typed_nodes(node._get_node(name), f"{path}.{name}" if path else name)


def _unknown_keys(cfg: DictConfig) -> Iterator[tuple[str, type]]:
    """(path, schema) of keys in a typed node that its dataclass lacks: added with `+key=...`."""
    for path, node, schema in _typed_nodes(cfg, ""):
        valid = _field_names(schema)
        for key in node:
            if key not in valid:
                yield f"{path}.{key}" if path else str(key), schema


def _reject_unknown_keys(cfg: DictConfig) -> None:
    """Hydra lets `+key=value` add keys no schema defines; they would be ignored or crash."""
    optimizer_config(cfg.optimizer, None)
    for i, phase in enumerate(cfg.schedule.phases):
        optimizer_config(cfg.optimizer, phase.optimizer, f"schedule.phases.{i}.optimizer")
    for key_path, schema in _unknown_keys(cfg):
        parent, _, key = key_path.rpartition(".")
        raise ConfigError(
            f"Unknown config key {key_path}: {parent or 'the top level'} has no setting "
            f"{key!r}; valid keys there: {', '.join(_field_names(schema))}."
        )


def _validate_optimizer(opt: DictConfig, prefix: str) -> None:
    _require(opt.lr > 0, f"{prefix}.lr", opt.lr, "the learning rate must be > 0")
    _require(opt.weight_decay >= 0, f"{prefix}.weight_decay", opt.weight_decay, "must be >= 0")
    if "momentum" in opt:
        _require(0 <= opt.momentum < 1, f"{prefix}.momentum", opt.momentum, "must be in [0, 1)")
    if "betas" in opt:
        betas = list(opt.betas)
        _require(
            len(betas) == 2 and all(0 <= b < 1 for b in betas),
            f"{prefix}.betas",
            betas,
            "must be two numbers in [0, 1)",
        )
    if "eps" in opt:
        _require(opt.eps > 0, f"{prefix}.eps", opt.eps, "must be > 0")
    if opt.get("nesterov"):  # torch refuses it at the first step otherwise, with a traceback
        _require(
            opt.momentum > 0,
            f"{prefix}.momentum",
            opt.momentum,
            f"Nesterov momentum ({prefix}.nesterov=true) needs a momentum > 0",
        )
    if "alpha" in opt:  # RMSprop's smoothing: above 1 its running average goes negative
        _require(0 <= opt.alpha < 1, f"{prefix}.alpha", opt.alpha, "must be in [0, 1)")


def validate(cfg: DictConfig) -> None:
    """Reject meaningless values before any work; raises ConfigError naming key and rule.

    A value that cannot even be read (an interpolation naming a missing key, say) is a
    ConfigError too, so it gets the same one-paragraph message instead of a traceback.
    """
    _reject_missing(cfg)
    try:
        values = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"Invalid config: {one_paragraph(exc)}.") from None
    for key, value in _floats(values, ""):
        # nan passes no range check's comparison as expected (nan > 0 is False, but so is
        # nan < 1), and inf passes "> 0": both would only show up as a non-finite loss.
        _require(math.isfinite(value), key, value, "must be a finite number")
    _check_values(cfg)


def _absent_keys(cfg: DictConfig) -> Iterator[str]:
    """Dotted keys a typed node's schema defines but the node lacks or leaves unset (`???`).

    `~seed` removes a key and `~optimizer` unsets a group: the run would stop at its first
    use with an attribute-error traceback.
    """
    for path, node, schema in _typed_nodes(cfg, ""):
        for name in _field_names(schema):
            if name not in node or OmegaConf.is_missing(node, name):
                yield f"{path}.{name}" if path else name


def _reject_missing(cfg: DictConfig) -> None:
    """A key every run needs, removed or unset on the command line, named before any work."""
    for key in _absent_keys(cfg):
        value = "OPTION (one of conf/" + key + "/)" if key in GROUPS else "VALUE"
        raise ConfigError(
            f"Missing config value {key}: every run needs it, and it was removed (~{key}) or "
            f"never set; give it one with {key}={value}."
        )


def one_paragraph(exc: BaseException) -> str:
    """OmegaConf's message (full_key, object_type on lines of their own) as one paragraph."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _floats(node: Any, key: str) -> Iterator[tuple[str, float]]:
    """(dotted key, value) of every float in a resolved config."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _floats(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _floats(v, f"{key}.{i}")
    elif isinstance(node, float):
        yield key, node


def _check_values(cfg: DictConfig) -> None:
    _reject_unknown_keys(cfg)
    t = cfg.trainer
    _require(t.epochs >= 1, "trainer.epochs", t.epochs, "must be an integer >= 1")
    _require(t.batch_size >= 1, "trainer.batch_size", t.batch_size, "must be an integer >= 1")
    _require(t.log_every >= 1, "trainer.log_every", t.log_every, "must be an integer >= 1")
    _require(t.eval_batch_size >= 1, "trainer.eval_batch_size", t.eval_batch_size, "must be >= 1")
    _require(
        t.report_batch_size >= 1, "trainer.report_batch_size", t.report_batch_size, "must be >= 1"
    )
    _require(t.device in DEVICES, "trainer.device", t.device, f"allowed: {', '.join(DEVICES)}")
    _require(
        0 <= t.num_threads <= MAX_THREADS,
        "trainer.num_threads",
        t.num_threads,
        f"0 (torch's choice) or a thread count from 1 to {MAX_THREADS}",
    )
    _require_tri_state(t.cuda_graphs, "trainer.cuda_graphs")
    _require(
        str(t.channels_last).lower() in (*TRI_STATE, "true", "false"),
        "trainer.channels_last",
        t.channels_last,
        "allowed: auto, on, off",
    )
    _require(
        str(t.split_bias_grad).lower() in (*TRI_STATE, "true", "false"),
        "trainer.split_bias_grad",
        t.split_bias_grad,
        "allowed: auto, on, off",
    )
    _require(
        str(t.cudnn_benchmark).lower() in ("on", "off", "true", "false"),
        "trainer.cudnn_benchmark",
        t.cudnn_benchmark,
        "allowed: on, off",
    )
    _require(
        t.precision in ("auto", "fp32", "bf16"),
        "trainer.precision",
        t.precision,
        "allowed: auto, fp32, bf16",
    )
    _require_tri_state(t.progress, "trainer.progress")
    _require(
        0 <= cfg.seed <= MAX_SEED, "seed", cfg.seed, f"must be an integer from 0 to {MAX_SEED}"
    )

    d = cfg.dataset
    _require(
        d.name in ("mnist", "fashion_mnist"),
        "dataset.name",
        d.name,
        "allowed: mnist, fashion_mnist",
    )
    _require(
        d.train_limit is None or d.train_limit >= 1,
        "dataset.train_limit",
        d.train_limit,
        "must be null (all images) or an integer >= 1",
    )
    _require(
        d.test_limit is None or d.test_limit >= 1,
        "dataset.test_limit",
        d.test_limit,
        "must be null (all images) or an integer >= 1",
    )
    _require(d.std > 0, "dataset.std", d.std, "must be > 0")

    a = cfg.augment
    _require(0 <= a.flip_p <= 1, "augment.flip_p", a.flip_p, "must be a probability in [0, 1]")
    _require(0 <= a.degrees <= 180, "augment.degrees", a.degrees, "must be in 0..180")

    m = cfg.model
    _check_model_fits_dataset(m, str(d.name))
    _require(len(m.layers) >= 1, "model.layers", list(m.layers), "needs at least one layer")
    seen: dict[str, int] = {}
    for i, layer in enumerate(m.layers):
        key = f"model.layers.{i}"
        _require(
            LAYER_NAME.fullmatch(str(layer.name)) is not None,
            f"{key}.name",
            layer.name,
            "a layer name is a letter followed by letters, digits or _ (it names the layer's "
            "weights in model.pth and its row in the shape report)",
        )
        _require(
            layer.name not in seen,
            f"{key}.name",
            layer.name,
            f"model.layers.{seen.get(layer.name)} has that name already; each layer needs its own",
        )
        seen[layer.name] = i
        _require(
            not layer_name_taken(str(layer.name)),
            f"{key}.name",
            layer.name,
            "torch's modules already use that name (a method or attribute of nn.Module); "
            "rename the layer",
        )
        if layer.kind == "maxpool":
            _require(
                2 * layer.padding <= layer.kernel,
                f"{key}.padding",
                layer.padding,
                f"a maxpool's padding can be at most half its kernel ({layer.kernel})",
            )
        if layer.kind == "conv":
            _require(
                layer.padding < max(int(layer.kernel), 1),
                f"{key}.padding",
                layer.padding,
                f"a conv's padding can be at most its kernel - 1 ({layer.kernel - 1}): wider, "
                "the border outputs would see nothing but zeros",
            )
        _require(
            layer.kind in LAYER_KINDS, f"{key}.kind", layer.kind, "allowed: conv, maxpool, linear"
        )
        _require(layer.kernel >= 1, f"{key}.kernel", layer.kernel, "must be >= 1")
        _require(layer.stride >= 1, f"{key}.stride", layer.stride, "must be >= 1")
        _require(layer.padding >= 0, f"{key}.padding", layer.padding, "must be >= 0")
        _require(
            layer.activation in ACTIVATIONS,
            f"{key}.activation",
            layer.activation,
            "allowed: null, relu, gelu, tanh",
        )
        if layer.kind != "maxpool":
            _require(layer.out >= 1, f"{key}.out", layer.out, "must be >= 1")
    _check_layer_sizes(m)
    last, at = m.layers[-1], f"model.layers.{len(m.layers) - 1}"
    _require(
        last.kind == "linear",
        f"{at}.kind",
        last.kind,
        f"the last layer ({last.name}) must be linear, giving one score per class",
    )
    _require(
        last.out == m.num_classes,
        f"{at}.out",
        last.out,
        f"the last layer ({last.name}) gives one score per class: out = num_classes "
        f"({m.num_classes})",
    )

    _validate_optimizer(cfg.optimizer, "optimizer")
    if cfg.tracking.enabled:
        _require(
            bool(str(cfg.tracking.experiment or "").strip()),
            "tracking.experiment",
            cfg.tracking.experiment,
            "must name an MLflow experiment (default: cvsweep)",
        )
    s = cfg.schedule
    _require(
        s.scheduler in SCHEDULERS,
        "schedule.scheduler",
        s.scheduler,
        f"allowed: {', '.join(SCHEDULERS)}",
    )
    _require(s.step_size >= 1, "schedule.step_size", s.step_size, "must be >= 1")
    _require(0 < s.gamma <= 1, "schedule.gamma", s.gamma, "must be in (0, 1]")
    _require(s.max_lr_factor > 0, "schedule.max_lr_factor", s.max_lr_factor, "must be > 0")
    _require(0 < s.pct_start < 1, "schedule.pct_start", s.pct_start, "must be in (0, 1)")
    _require(s.min_lr >= 0, "schedule.min_lr", s.min_lr, "must be >= 0")
    if s.scheduler == "cosine" and not s.phases:
        _require(
            s.min_lr < cfg.optimizer.lr,
            "schedule.min_lr",
            s.min_lr,
            f"cosine annealing goes down to it, so it must be below optimizer.lr "
            f"({cfg.optimizer.lr})",
        )
    _require(
        bool(s.phases) or s.name not in PHASED_SCHEDULES,
        "schedule.phases",
        [],
        f"schedule={s.name} is its phases, and without them the run would train "
        f"{cfg.optimizer.name} at a constant rate under the name {s.name}; choose "
        "schedule=constant (or another schedule) for that, or give the phases",
    )
    for i, phase in enumerate(s.phases):
        _require(phase.epochs >= 1, f"schedule.phases.{i}.epochs", phase.epochs, "must be >= 1")
        settings = optimizer_config(cfg.optimizer, phase.optimizer)
        _validate_optimizer(settings, f"schedule.phases.{i}.optimizer")
        if s.scheduler == "cosine":
            _require(
                s.min_lr < settings.lr,
                "schedule.min_lr",
                s.min_lr,
                f"cosine annealing goes down to it in each phase, so it must be below each "
                f"phase's lr (schedule.phases.{i} trains at {settings.lr})",
            )


def _check_model_fits_dataset(m: DictConfig, dataset: str) -> None:
    """The model's input and output sizes are the dataset's: a mismatch would only show as a
    torch shape error after the run was created."""
    if dataset not in DATASET_SHAPES:
        return
    channels, side, classes = DATASET_SHAPES[dataset]
    for key, value, want, what in (
        ("in_channels", m.in_channels, channels, f"{dataset} images have {channels} channel"),
        ("image_size", m.image_size, side, f"{dataset} images are {side}x{side}"),
        ("num_classes", m.num_classes, classes, f"{dataset} has {classes} classes"),
    ):
        _require(value == want, f"model.{key}", value, f"{what}; it must be {want}")


def _check_layer_sizes(m: DictConfig) -> None:
    """The layer list must be buildable: no layer shrinks the image to nothing, and nothing
    spatial follows a linear layer (the tensor is flat by then)."""
    _require(m.in_channels >= 1, "model.in_channels", m.in_channels, "must be >= 1")
    _require(m.image_size >= 1, "model.image_size", m.image_size, "must be >= 1")
    size, flat_at = int(m.image_size), None
    for i, layer in enumerate(m.layers):
        key = f"model.layers.{i}"
        # A setting the layer's kind has no use for would be ignored without a word.
        if layer.kind == "linear":
            for name, unset in (("kernel", 1), ("stride", 1), ("padding", 0)):
                _require(
                    layer[name] == unset,
                    f"{key}.{name}",
                    layer[name],
                    f"the linear layer {layer.name} has no {name} (it takes the flat output of "
                    "the layer before it); its settings are out and activation",
                )
            flat_at = flat_at or layer.name
            continue
        if layer.kind == "maxpool":
            _require(
                layer.out == 0,
                f"{key}.out",
                layer.out,
                f"the maxpool layer {layer.name} keeps its input's channels, so out does not "
                "apply to it; its settings are kernel, stride and padding",
            )
        _require(
            flat_at is None,
            f"{key}.kind",
            layer.kind,
            f"a {layer.kind} layer cannot follow the linear layer {flat_at} (its output is flat)",
        )
        before, size = size, feature_map_size(size, layer)
        _require(
            size >= 1,
            f"{key}.kernel",
            layer.kernel,
            f"layer {layer.name} gets a {before}x{before} input (padding {layer.padding}), "
            "smaller than its kernel, and would shrink it to nothing; use a smaller kernel or "
            "more padding",
        )


def unused_with_phases(cfg: DictConfig, overrides: Iterable[str]) -> list[str]:
    """The command-line overrides a phased schedule makes moot, to say so instead of silently.

    With schedule.phases the phases fix the run's length, so trainer.epochs is not used; an
    optimizer setting is not used when every phase sets it itself or names another optimizer
    (which starts from that optimizer's defaults), and the optimizer group choice is not used
    when every phase names an optimizer other than the group's.
    """
    phases = list(cfg.schedule.phases or [])
    if not phases:
        return []
    run_name = cfg.optimizer.name
    unused = []
    for item in overrides:
        key, sep, _ = item.lstrip("+~").partition("=")
        if not sep:
            continue
        if key == "trainer.epochs":
            unused.append(item)
        elif key == "optimizer":
            # A phase that names the group's optimizer (or none) starts from the group's
            # settings, so the choice matters unless every phase names another one.
            if all((p.optimizer or {}).get("name", run_name) != run_name for p in phases):
                unused.append(item)
        elif key.startswith("optimizer."):
            setting = key.split(".", 1)[1]
            if all(
                setting in (p.optimizer or {})
                or (p.optimizer or {}).get("name", run_name) != run_name
                for p in phases
            ):
                unused.append(item)
    return unused


# The schedule settings each scheduler reads (optim.build_scheduler); the others it ignores.
SCHEDULER_SETTINGS = {
    "constant": (),
    "step": ("step_size", "gamma"),
    "cosine": ("min_lr",),
    "onecycle": ("max_lr_factor", "pct_start"),
}


def unused_by_scheduler(scheduler: str, overrides: Iterable[str]) -> list[str]:
    """The overrides of schedule settings that the run's scheduler does not read
    (`schedule=step schedule.min_lr=1e-4`): said, since they change nothing."""
    used = SCHEDULER_SETTINGS.get(scheduler)
    if used is None:
        return []
    every = {k for keys in SCHEDULER_SETTINGS.values() for k in keys}
    unused = []
    for item in overrides:
        key, sep, _ = item.lstrip("+~").partition("=")
        setting = key.removeprefix("schedule.")
        if sep and key.startswith("schedule.") and setting in every and setting not in used:
            unused.append(item)
    return unused


def total_epochs(cfg: DictConfig) -> int:
    """Phases, when present, fix the length of the run; otherwise trainer.epochs does."""
    if cfg.schedule.phases:
        return int(sum(p.epochs for p in cfg.schedule.phases))
    return int(cfg.trainer.epochs)
