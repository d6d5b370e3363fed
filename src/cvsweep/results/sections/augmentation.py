"""The augmentation and augmentation_long sections: whether augmentation slows early training
and whether it generalizes better, from mini-batches to a test accuracy and the train - test
gap.
"""

from __future__ import annotations

import statistics

from ..document import Context, Doc, _plot
from ..presets import Preset
from ..runs import Measured, Variant
from ..stats import (
    _signed,
    batches_to,
    final_acc,
    final_train_acc,
    fmt_batches,
    is_clear,
    paired_difference,
    stat,
    verdict,
)

THRESHOLDS = (0.85, 0.90)


def _gap(r: Measured) -> float | None:
    tr, te = final_train_acc(r), final_acc(r)
    return None if tr is None or te is None else tr - te


def section_augmentation(doc: Doc, ctx: Context, preset: Preset, v: Variant, suffix: str) -> None:
    groups = v.groups("augment")
    rows = []
    for name, runs in groups.items():
        claimed = preset.claim(name, "batches_to_90")
        rows.append(
            [
                name,
                str(len(runs)),
                *(fmt_batches(runs, t) for t in THRESHOLDS),
                "–" if claimed is None else str(claimed),
                stat(runs, final_acc).fmt(),
                stat(runs, final_train_acc).fmt(),
                stat(runs, _gap).fmt(),
            ]
        )
    doc.table(
        [
            "augment",
            "n",
            "mini-batches to 0.85",
            "mini-batches to 0.90",
            "claimed to 0.90",
            "final test acc (%)",
            "final train acc (%)",
            "train − test (points)",
        ],
        rows,
    )
    doc.add(
        f"Mini-batches to a test accuracy are read at the log points (every "
        f"{v.param('trainer.log_every')} mini-batches), so they are exact to within that. Train "
        "accuracy is the mean over the mini-batches since the previous log point, measured on the "
        "(augmented) training batches in training mode.",
        "",
    )
    _plot(
        doc, v.runs, "augment", preset.name, suffix, "test accuracy with and without augmentation"
    )
    text = []
    if "none" in groups and "rot_flip" in groups:
        text = _augmentation_discussion(preset, groups["none"], groups["rot_flip"])
    doc.add("**Discussion.** " + " ".join(text), "")


def _last_step(runs: list[Measured]) -> int:
    """How many mini-batches the longest of the runs trained (its last log point)."""
    return max((r.summary.test_acc[-1][0] for r in runs if r.summary.test_acc), default=0)


def _reach(runs: list[Measured], threshold: float) -> tuple[float | None, str]:
    """(mean mini-batches to threshold over the runs that got there, words for it)."""
    reached = [b for b in (batches_to(r, threshold) for r in runs) if b is not None]
    last = _last_step(runs)
    if not reached:
        return None, f"not reached within {last} mini-batches"
    mean = statistics.fmean(reached)
    some = "" if len(reached) == len(runs) else f" ({len(reached)} of {len(runs)} runs)"
    return mean, f"after {mean:.0f} mini-batches{some}"


def _augmentation_discussion(
    preset: Preset, plain: list[Measured], aug: list[Measured]
) -> list[str]:
    text = []
    words = {}
    slows = None
    for t in THRESHOLDS:
        b_plain, w_plain = _reach(plain, t)
        b_aug, w_aug = _reach(aug, t)
        words[t] = (w_plain, w_aug)
        if slows is None and b_plain is not None:
            slows = b_aug is None or b_aug > b_plain
    text.append(
        "Test accuracy without augmentation: "
        + ", ".join(f"{t:.2f} {words[t][0]}" for t in THRESHOLDS)
        + "; with rot_flip: "
        + ", ".join(f"{t:.2f} {words[t][1]}" for t in THRESHOLDS)
        + "."
    )
    c_plain = preset.claim("none", "batches_to_90")
    c_aug = preset.claim("rot_flip", "batches_to_90")
    if c_plain is not None and c_aug is not None:
        b90 = _reach(plain, 0.90)[0]
        trained = _last_step(plain)
        if b90 is None and trained < float(c_plain):
            verdict90 = (
                f"these runs trained {trained} mini-batch{'' if trained == 1 else 'es'}, too few "
                "to test it (0.90 is not reached within them)."
            )
        elif b90 is None:
            verdict90 = (
                "that does not hold here: without augmentation 0.90 is not reached within this "
                "budget."
            )
        elif b90 <= 3 * float(c_plain):
            verdict90 = "the measured numbers are of that order."
        else:
            verdict90 = f"that does not hold here: 0.90 takes {b90:.0f} mini-batches."
        text.append(
            f"The assignment claimed 0.90 after about {c_plain} mini-batches without and about "
            f"{c_aug} with augmentation; {verdict90}"
        )
    if slows is not None:
        text.append(
            "Augmentation slows early training: "
            + ("holds here." if slows else "does not hold here.")
        )
    d = paired_difference(aug, plain)
    gap_plain, gap_aug = stat(plain, _gap), stat(aug, _gap)
    text.append(
        f"At the end, test accuracy with augmentation minus without is {_signed(d.mean)} points "
        f"({verdict(d)}); the train − test gap is {100 * gap_aug.mean:.2f} points with and "
        f"{100 * gap_plain.mean:.2f} without."
    )
    if preset.claim("augmentation_generalizes_better"):
        better = d.mean > 0 and bool(is_clear(d))
        if better:
            text.append(
                "The claim that augmentation generalizes better with more training holds "
                "at this budget."
            )
        else:
            # Said only where the gaps differ clearly, by the test every other claim gets.
            gaps = paired_difference(aug, plain, _gap)
            smaller_gap = gaps.mean < 0 and bool(is_clear(gaps))
            text.append(
                "The claim that augmentation generalizes better with more training does not "
                "hold at this budget: the augmented model's test accuracy is not clearly higher"
                + (
                    "; its smaller train − test gap shows less overfitting, which at this "
                    "model size and budget does not turn into test accuracy."
                    if smaller_gap
                    else "."
                )
            )
    return text
