"""The shape report: each layer's input/output shape and trainable parameters, measured.

Shapes come from forward hooks on a real forward pass of the configured model, so the table can
never drift from the code the way a hand-written one did.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .model import trainable_parameters


@dataclass
class ShapeRow:
    layer: str
    kind: str
    input_shape: list[int]
    output_shape: list[int]
    params: int


@dataclass
class ShapeReport:
    model: str
    batch_size: int
    rows: list[ShapeRow]
    total_params: int

    def to_markdown(self) -> str:
        header = f"Shape report: model={self.model}, batch size {self.batch_size}\n\n"
        lines = [
            "| layer | kind | input shape | output shape | trainable params |",
            "|---|---|---|---|---:|",
        ]
        for r in self.rows:
            shape_in = "" if not r.input_shape else _fmt(r.input_shape)
            lines.append(
                f"| {r.layer} | {r.kind} | {shape_in} | {_fmt(r.output_shape)} | {r.params:,} |"
            )
        lines.append(f"| **total** | | | | **{self.total_params:,}** |")
        return header + "\n".join(lines) + "\n"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _fmt(shape: list[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _kind(module: nn.Module) -> str:
    """The block's modules in order; a Flatten is named, as it explains the block's shapes."""
    inner = list(module) if isinstance(module, nn.Sequential) else [module]
    return "+".join(type(m).__name__ for m in inner)


def shape_report(
    model: nn.Sequential, model_name: str, in_shape: tuple[int, ...], batch_size: int = 16
) -> ShapeReport:
    """Run one forward pass on zeros of (batch_size, *in_shape) and record every block."""
    rows: list[ShapeRow] = []
    hooks = []

    def hook(name: str, module: nn.Module):
        def record(_mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            rows.append(
                ShapeRow(
                    layer=name,
                    kind=_kind(module),
                    input_shape=list(inputs[0].shape),
                    output_shape=list(output.shape),
                    params=trainable_parameters(module),
                )
            )

        return record

    for name, module in model.named_children():
        hooks.append(module.register_forward_hook(hook(name, module)))
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model(torch.zeros(batch_size, *in_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
    input_row = ShapeRow("input", "", [], [batch_size, *in_shape], 0)
    return ShapeReport(
        model=model_name,
        batch_size=batch_size,
        rows=[input_row, *rows],
        total_params=trainable_parameters(model),
    )
