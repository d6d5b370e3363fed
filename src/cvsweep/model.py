"""The CNN, built from the config's layer list so widths and kernels live in conf/, not code.

Each configured layer becomes one top-level block (conv/pool/linear plus its activation), which
is exactly one row of the shape report: an activation belongs to the layer before it, and the
flatten before the first linear layer is part of that layer's block.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class ModelConfigError(ValueError):
    """A layer list that cannot be built (e.g. a kernel larger than its input)."""


def _activation(name: str | None) -> list[nn.Module]:
    return [] if name is None else [ACTIVATIONS[name]()]


def build_model(model_cfg: Any) -> nn.Sequential:
    """An nn.Sequential of named blocks, one per configured layer."""
    channels, size = int(model_cfg.in_channels), int(model_cfg.image_size)
    features: int | None = None  # set once the tensor is flat
    blocks: dict[str, nn.Module] = {}
    for layer in model_cfg.layers:
        parts: list[nn.Module]
        if layer.kind == "conv":
            if features is not None:
                raise ModelConfigError(f"layer {layer.name}: conv after a linear layer")
            parts = [nn.Conv2d(channels, layer.out, layer.kernel, layer.stride, layer.padding)]
            channels = int(layer.out)
            size = (size + 2 * layer.padding - layer.kernel) // layer.stride + 1
        elif layer.kind == "maxpool":
            if features is not None:
                raise ModelConfigError(f"layer {layer.name}: pooling after a linear layer")
            parts = [nn.MaxPool2d(layer.kernel, layer.stride if layer.stride > 1 else None)]
            stride = layer.stride if layer.stride > 1 else layer.kernel
            size = (size - layer.kernel) // stride + 1
        else:  # linear
            parts = []
            if features is None:
                parts.append(nn.Flatten())
                features = channels * size * size
            parts.append(nn.Linear(features, layer.out))
            features = int(layer.out)
        if size < 1:
            raise ModelConfigError(
                f"layer {layer.name} shrinks the {model_cfg.image_size}x{model_cfg.image_size} "
                "input to nothing; use a smaller kernel or stride"
            )
        parts += _activation(layer.activation)
        blocks[layer.name] = parts[0] if len(parts) == 1 else nn.Sequential(*parts)
    return nn.Sequential(OrderedDict(blocks.items()))


def trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
