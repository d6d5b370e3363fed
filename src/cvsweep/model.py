"""The CNN, built from the config's layer list so widths and kernels live in conf/, not code.

Each configured layer becomes one top-level block (conv/pool/linear plus its activation), which
is exactly one row of the shape report: an activation belongs to the layer before it, and the
flatten before the first linear layer is part of that layer's block.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from .config import ConfigError, feature_map_size, layer_name_taken, maxpool_stride

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class ModelConfigError(ConfigError):
    """A layer list that cannot be built (e.g. a kernel larger than its input).

    A ConfigError, so a job reports it as one and stops before any run is created.
    """


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
            size = feature_map_size(size, layer)
        elif layer.kind == "maxpool":
            if features is not None:
                raise ModelConfigError(f"layer {layer.name}: pooling after a linear layer")
            parts = [nn.MaxPool2d(layer.kernel, maxpool_stride(layer), layer.padding)]
            size = feature_map_size(size, layer)
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
    _check_names(model_cfg.layers)
    return nn.Sequential(OrderedDict(blocks.items()))


def _check_names(layers: Any) -> None:
    """A layer named like an attribute of nn.Module ("forward", "training", "cuda") cannot be
    a submodule of that name; said with its key, like any other config value."""
    for i, layer in enumerate(layers):
        if layer_name_taken(str(layer.name)):
            raise ModelConfigError(
                f"Invalid config value model.layers.{i}.name={layer.name!r}: torch's modules "
                "already use that name (a method or attribute of nn.Module); rename the layer."
            )


class _ChannelBias(torch.autograd.Function):
    """`x + bias` per channel, whose bias gradient is summed in two small reductions.

    Autograd's own bias gradient for a convolution is one reduction over the batch and both
    spatial dims at once; for a handful of channels it runs on few GPU blocks and was the
    largest item of the captured step on an H200 (docs/performance.md). Summing each image's
    channel map first, then over the batch, gives the same value up to float rounding.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.bias_dtype = bias.dtype  # under autocast x is bf16 and the gradient sums in fp32
        return x + bias.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per_image = grad.sum(dim=tuple(range(2, grad.dim())), dtype=ctx.bias_dtype)
        return grad, per_image.sum(0)


class SplitBiasConv2d(nn.Conv2d):
    """nn.Conv2d with the bias added by _ChannelBias: same parameters, same state_dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or self.bias is None:  # an unbatched image: nothing to split
            return super().forward(x)
        out = self._conv_forward(x, self.weight, None)
        return _ChannelBias.apply(out, self.bias)


def split_conv_bias_grads(model: nn.Module) -> nn.Module:
    """Switch every plain nn.Conv2d in `model` to SplitBiasConv2d, in place.

    Only the class changes: the parameters, their names and the optimizer's view of them stay,
    so checkpoints load either way.
    """
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = SplitBiasConv2d
    return model


def trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
