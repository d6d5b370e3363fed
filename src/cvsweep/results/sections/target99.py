"""The target99 section: whether the model passes the question's 95 % bar and the preset's
target, shown per seed and with the logged history so that the answer can be checked.
"""

from __future__ import annotations

import math
from typing import Any

from ...compare import reached
from ...tracking import with_retry
from ..document import Context, Doc, _plot
from ..presets import Preset
from ..runs import Variant
from ..stats import _claim_num, _signed, final_acc, final_train_acc, pct, stat


def section_target99(doc: Doc, ctx: Context, preset: Preset, v: Variant, suffix: str) -> None:
    target = float((preset.notes.get("target") or {}).get("test_acc", 0.992))
    claimed = preset.claim("test_acc")
    rows = []
    for r in sorted(v.runs, key=lambda r: r.seed):
        has_model = _has_artifact(ctx.client, r.summary.run_id, "model.pth")
        rows.append(
            [
                r.seed,
                pct(final_acc(r)),
                pct(r.summary.best_test_acc),
                pct(final_train_acc(r)),
                str(len(r.summary.test_acc)),
                "yes" if has_model else "no",
            ]
        )
    acc = stat(v.runs, final_acc)
    rows.append(
        [
            f"**mean (n={acc.n})**",
            f"**{acc.fmt()}**",
            stat(v.runs, lambda r: r.summary.best_test_acc).fmt(),
            stat(v.runs, final_train_acc).fmt(),
            "",
            "",
        ]
    )
    doc.table(
        [
            "seed",
            "final test acc (%)",
            "best test acc (%)",
            "final train acc (%)",
            "log points",
            "model.pth",
        ],
        rows,
    )
    doc.table(
        ["", "test acc (%)"],
        [
            ["assignment's answer (claimed)", _claim_num(claimed, 100.0, 2)],
            ["target of this preset", f"≥ {100 * target:.2f} (mean over seeds)"],
            ["question's bar", "> 95"],
            ["measured", f"{acc.fmt()} (n={acc.n})"],
        ],
    )
    first = min(v.runs, key=lambda r: r.seed)
    log = _history_table(ctx.client, first.summary.run_id)
    if log:
        doc.add(
            f"What seed {first.seed} printed and logged (every "
            f"{first.params.get('trainer.log_every')} mini-batches and at each epoch end):",
            "",
        )
        doc.table(["mini-batch", "train acc (%)", "test acc (%)", "lr"], log)
    _plot(doc, v.runs, "seed", preset.name, suffix, "test accuracy per seed")
    met = reached(acc.mean, target)
    text = [
        f"Mean final test accuracy {acc.fmt()} % over {acc.n} seed(s): the question's 95 % bar is "
        + ("passed" if acc.mean > 0.95 else "not passed")
        + f", and this preset's target of {100 * target:.2f} % is "
        + ("met." if met else "not met."),
    ]
    if claimed is not None:
        verdict = "matched or beaten" if reached(acc.mean, float(claimed)) else "not reached"
        text.append(
            f"The assignment's {100 * float(claimed):.2f} % answer is {verdict} "
            f"({_signed(acc.mean - float(claimed))} points)."
        )
    doc.add("**Discussion.** " + " ".join(text), "")
    doc.add(
        "Each run's model.pth can be checked on its own: `cvsweep evaluate <run id or job "
        "folder>` rebuilds the model from the run's logged config, scores it on the test set "
        "and says whether that is the accuracy the run logged.",
        "",
    )


def _has_artifact(client: Any, run_id: str, name: str) -> bool:
    try:
        return any(a.path == name for a in with_retry(lambda: client.list_artifacts(run_id)))
    except Exception:
        return False


def _history_table(client: Any, run_id: str, limit: int = 40) -> list[list[str]]:
    """Every log point of the run; past `limit`, the first and last halves with a row saying
    how many points lie between them."""
    series = {}
    for key in ("train_acc", "test_acc", "lr"):
        hist = with_retry(lambda k=key: client.get_metric_history(run_id, k))
        series[key] = {m.step: m.value for m in hist}
    steps = sorted(series["test_acc"])
    rows = [
        [
            str(s),
            pct(series["train_acc"].get(s)),
            pct(series["test_acc"].get(s)),
            f"{series['lr'].get(s, math.nan):.3e}",
        ]
        for s in steps
    ]
    if len(rows) > limit:
        left_out = len(rows) - 2 * (limit // 2)
        rows = [*rows[: limit // 2], [f"... {left_out} more", "", "", ""], *rows[-(limit // 2) :]]
    return rows
