"""Figures: one run's curves, and a sweep's comparison per swept key.

matplotlib's Agg backend is forced so plotting works on machines without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def curves_figure(history: Sequence[Any], path: Path) -> Path:
    """Loss, accuracy and lr against mini-batches, train and test, in one figure.

    A plain Figure with a fixed layout: it is drawn at the end of every run, and automatic
    layout engines would double the time the run waits for it.
    """
    steps = [p.step for p in history]
    fig = Figure(figsize=(15, 4))
    axes = fig.subplots(1, 3)
    axes[0].plot(steps, [p.train_loss for p in history], label="train")
    axes[0].plot(steps, [p.test_loss for p in history], label="test")
    axes[0].set_title("loss")
    axes[1].plot(steps, [100 * p.train_acc for p in history], label="train")
    axes[1].plot(steps, [100 * p.test_acc for p in history], label="test")
    axes[1].set_title("accuracy (%)")
    axes[2].plot(steps, [p.lr for p in history], color="tab:green")
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("mini-batch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.13, top=0.92, wspace=0.18)
    fig.savefig(path, dpi=100)
    return path


__all__ = ["curves_figure", "plt"]
