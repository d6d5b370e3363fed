"""The fashion_two_phase and fashion_better sections: the assignment's SGD-then-Adam schedule
checked after each phase, and a better schedule compared with it on the same budget.
"""

from __future__ import annotations

from typing import Any

from ...tracking import with_retry
from ..document import Context, Doc, _matching, _plot
from ..presets import Preset
from ..runs import Measured, Variant
from ..settings import total_epochs
from ..stats import (
    _claim_num,
    _signed,
    final_acc,
    final_train_acc,
    paired_difference,
    stat,
    verdict,
)


def _after_phase1(client: Any, r: Measured) -> float | None:
    n1 = r.params.get("schedule.phases.0.epochs")
    if not n1 or not n1.isdigit():
        return None
    hist = with_retry(lambda: client.get_metric_history(r.summary.run_id, "epoch_test_acc"))
    return next((m.value for m in hist if m.step == int(n1)), None)


def section_fashion_two_phase(
    doc: Doc, ctx: Context, preset: Preset, v: Variant, suffix: str
) -> None:
    p1 = stat(v.runs, lambda r: _after_phase1(ctx.client, r))
    final = stat(v.runs, final_acc)
    n1 = v.param("schedule.phases.0.epochs")
    n2 = v.param("schedule.phases.1.epochs")
    c1, c2 = preset.claim("after_phase1_test_acc"), preset.claim("final_test_acc")
    doc.table(
        ["test accuracy (%)", "claimed", f"measured (n={final.n})", "difference"],
        [
            [
                f"after the SGD phase (epoch {n1})",
                _claim_num(c1, 100, 1),
                p1.fmt(),
                "–" if c1 is None else _signed(p1.mean - float(c1)),
            ],
            [
                f"at the end (epoch {total_epochs(v.runs[0].params)}, after {n2} Adam epoch(s))",
                _claim_num(c2, 100, 1),
                final.fmt(),
                "–" if c2 is None else _signed(final.mean - float(c2)),
            ],
        ],
    )
    _plot(doc, v.runs, "experiment", preset.name, suffix, "test accuracy, SGD then Adam")
    # The claims are for the preset's 10 + 20 epochs on every image: fewer say nothing of them.
    smaller = any(k in v.extra for k in ("schedule.phases.", "dataset.train_limit="))
    text = [
        f"After {n1} SGD epoch(s) the test accuracy is {p1.fmt()} %"
        + (
            f" (claimed {100 * float(c1):.0f} %: {_holds(p1.mean, float(c1), smaller)})"
            if c1
            else ""
        )
        + f"; after the {n2} Adam epoch(s) it is {final.fmt()} %"
        + (
            f" (claimed {100 * float(c2):.0f} %: {_holds(final.mean, float(c2), smaller)})."
            if c2
            else "."
        )
    ]
    if final.n and p1.n:
        text.append(f"The Adam phase adds {_signed(final.mean - p1.mean)} points.")
    doc.add("**Discussion.** " + " ".join(text), "")


def _holds(measured: float, claimed: float, smaller: bool = False, tol: float = 0.005) -> str:
    if measured >= claimed - tol:
        return "holds"
    if smaller:
        return (
            f"{100 * (claimed - measured):.1f} points short, at a smaller budget than the "
            "claim's, so not a test of it"
        )
    return f"does not hold, {100 * (claimed - measured):.1f} points short"


def section_fashion_better(doc: Doc, ctx: Context, preset: Preset, v: Variant, suffix: str) -> None:
    base = _matching(ctx, str(preset.notes.get("baseline", "fashion_two_phase")), v)
    rows = []
    for name, runs in (
        (preset.notes.get("baseline", "fashion_two_phase"), base.runs if base else []),
        (preset.name, v.runs),
    ):
        if not runs:
            continue
        s = stat(runs, final_acc)
        rows.append(
            [
                f"experiment={name}",
                runs[0].params.get("optimizer", "?") if name == preset.name else "sgd, then adam",
                runs[0].params.get("schedule", "?"),
                str(s.n),
                s.fmt(),
                stat(runs, lambda r: r.summary.best_test_acc).fmt(),
                stat(runs, final_train_acc).fmt(),
            ]
        )
    doc.table(
        [
            "preset",
            "optimizer",
            "schedule",
            "n",
            "final test acc (%)",
            "best test acc (%)",
            "final train acc (%)",
        ],
        rows,
    )
    runs = v.runs + (base.runs if base else [])
    _plot(doc, runs, "experiment", preset.name, suffix, "test accuracy, two schedules")
    s = stat(v.runs, final_acc)
    text = [
        f"Adam with a one-cycle lr reaches {s.fmt()} % on {total_epochs(v.runs[0].params)} epochs."
    ]
    if base:
        d = paired_difference(v.runs, base.runs)
        text.append(
            f"That is {_signed(d.mean)} points against SGD-then-Adam on the same budget "
            f"({verdict(d)})."
        )
    else:
        text.append("No experiment=fashion_two_phase run on the same budget is in the store.")
    doc.add("**Discussion.** " + " ".join(text), "")
