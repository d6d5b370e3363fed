"""The markdown being written and what every section may read, shared so that all sections
write their tables and figures the same way and into one folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..compare import plot_by_key
from .presets import Preset
from .runs import Measured, Variant
from .settings import budget_key


@dataclass
class Doc:
    """The markdown being written and the folder its figures go to."""

    img_dir: Path
    lines: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, header: list[str], rows: list[list[str]], align: str | None = None) -> None:
        self.add("| " + " | ".join(header) + " |")
        self.add(align or "|" + "---|" * len(header))
        for row in rows:
            self.add("| " + " | ".join(row) + " |")
        self.add("")

    def figure(self, path: Path, alt: str) -> None:
        self.figures.append(path)
        self.add(f"![{alt}]({self.img_dir.name}/{path.name})", "")


@dataclass
class Context:
    client: Any
    presets: dict[str, Preset]
    variants: dict[str, list[Variant]]
    unfinished: dict[str, int]


Section = Callable[[Doc, Context, Preset, Variant, str], None]


def _figure_path(doc: Doc, preset: str, suffix: str) -> Path:
    doc.img_dir.mkdir(parents=True, exist_ok=True)
    return doc.img_dir / f"{preset}{suffix}.png"


def _plot(doc: Doc, runs: list[Measured], key: str, preset: str, suffix: str, alt: str) -> None:
    path = _figure_path(doc, preset, suffix)
    plot_by_key([r.summary for r in runs], key, path)
    doc.figure(path, alt)


def _matching(ctx: Context, preset: str, like: Variant) -> Variant | None:
    """The other preset's latest variant on the same budget (data, images, epochs, batch)."""
    want = {budget_key(r) for r in like.runs}
    for other in ctx.variants.get(preset, []):
        if {budget_key(r) for r in other.runs} == want:
            return other
    return None
