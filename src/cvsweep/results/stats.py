"""Numbers over seeds: the one place that decides how a mean, its spread and a clear difference
are computed and printed, so that every section states them alike.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .runs import Measured


@dataclass
class Stat:
    """Mean and sample std of a handful of per-seed values."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    def fmt(self, scale: float = 100.0, digits: int = 2) -> str:
        if not self.values:
            return "–"
        if self.n == 1:
            return f"{scale * self.mean:.{digits}f}"
        return f"{scale * self.mean:.{digits}f} ± {scale * self.std:.{digits}f}"


def stat(runs: Iterable[Measured], get: Callable[[Measured], float | None]) -> Stat:
    return Stat([v for v in (get(r) for r in runs) if v is not None and math.isfinite(v)])


def final_acc(r: Measured) -> float | None:
    return r.summary.final_test_acc


def final_train_acc(r: Measured) -> float | None:
    return r.metrics.get("train_acc")


def final_test_loss(r: Measured) -> float | None:
    return r.metrics.get("final_test_loss")


def final_train_loss(r: Measured) -> float | None:
    return r.summary.final_train_loss


def paired_difference(
    a: list[Measured],
    b: list[Measured],
    get: Callable[[Measured], float | None] = final_acc,
) -> Stat:
    """Per-seed differences a - b of a measure, final test accuracy by default (same seed =
    same init and data order); unpaired difference of means when the seeds do not match."""
    acc_a = {r.seed: get(r) for r in a}
    acc_b = {r.seed: get(r) for r in b}
    common = sorted(set(acc_a) & set(acc_b))
    diffs = [acc_a[s] - acc_b[s] for s in common if acc_a[s] is not None and acc_b[s] is not None]
    if diffs:
        return Stat(diffs)
    return Stat([stat(a, get).mean - stat(b, get).mean])


def is_clear(diff: Stat) -> bool | None:
    """Clear when the mean difference exceeds twice its standard error; None for one seed."""
    if diff.n < 2:
        return None
    return abs(diff.mean) > 2 * diff.std / math.sqrt(diff.n)


def verdict(diff: Stat) -> str:
    clear = is_clear(diff)
    if clear is None:
        return "one seed only, so no spread to judge it by"
    if clear:
        return f"clear: more than twice its standard error over {diff.n} seeds"
    return f"not clear: within twice its standard error over {diff.n} seeds"


def pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}"


def points(d: Stat) -> str:
    """The size of a difference in accuracy points, with its spread over seeds when there is one."""
    spread = f" ± {100 * d.std:.2f}" if d.n > 1 else ""
    return f"{100 * abs(d.mean):.2f}{spread} points"


def batches_to(r: Measured, threshold: float) -> int | None:
    return r.summary.batches_to(threshold)


def fmt_batches(runs: list[Measured], threshold: float) -> str:
    reached = [b for b in (batches_to(r, threshold) for r in runs) if b is not None]
    if not reached:
        return f"not reached (0 of {len(runs)})"
    s = Stat([float(b) for b in reached])
    text = s.fmt(scale=1.0, digits=0)
    if len(reached) < len(runs):
        text += f" ({len(reached)} of {len(runs)} reached)"
    return text


def _claim_num(value: Any, scale: float, digits: int) -> str:
    return "–" if value is None else f"{scale * float(value):.{digits}f}"


def _signed(x: float) -> str:
    return f"{100 * x:+.2f}"
