"""The optimizers and optimizers_tuned sections: whether "Adam beats SGD" holds at the
assignment's SGD learning rate, and still holds once SGD's learning rate is tuned on the same
budget.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..document import Context, Doc, _figure_path, _matching, _plot
from ..presets import Preset
from ..runs import Measured, Variant
from ..stats import (
    _claim_num,
    _signed,
    final_acc,
    final_test_loss,
    final_train_loss,
    is_clear,
    paired_difference,
    points,
    stat,
    verdict,
)


def section_optimizers(doc: Doc, ctx: Context, preset: Preset, v: Variant, suffix: str) -> None:
    groups = v.groups("optimizer")
    rows = []
    for name, runs in groups.items():
        rows.append(
            [
                name,
                ", ".join(sorted({r.params.get("optimizer.lr", "?") for r in runs})),
                str(len(runs)),
                stat(runs, final_train_loss).fmt(scale=1.0, digits=3),
                stat(runs, final_test_loss).fmt(scale=1.0, digits=3),
                stat(runs, final_acc).fmt(),
                _claim_num(preset.claim(name, "final_loss"), 1.0, 2),
                _claim_num(preset.claim(name, "test_acc"), 100.0, 2),
            ]
        )
    doc.table(
        [
            "optimizer",
            "lr",
            "n",
            "final train loss",
            "final test loss",
            "final test acc (%)",
            "claimed loss",
            "claimed acc (%)",
        ],
        rows,
    )
    doc.add(
        "Final train loss is each run's mean training loss over its last log interval (the "
        "number a training loop prints, moving with `trainer.log_every`); final test loss is the "
        "trained model's on the test images.",
        "",
    )
    _plot(doc, v.runs, "optimizer", preset.name, suffix, "test accuracy, SGD vs Adam")
    text = []
    if "sgd" in groups and "adam" in groups:
        d = paired_difference(groups["adam"], groups["sgd"])
        who = "Adam beats SGD" if d.mean > 0 else "SGD beats Adam"
        text.append(
            f"At these settings {who} by {points(d)} of final test accuracy (mean ± std of "
            f"the per-seed differences; {verdict(d)})."
        )
        for name, shown in (("sgd", "SGD"), ("adam", "Adam")):
            acc, loss = stat(groups[name], final_acc), stat(groups[name], final_train_loss)
            c_acc, c_loss = preset.claim(name, "test_acc"), preset.claim(name, "final_loss")
            if c_acc is None:
                continue
            line = (
                f"{shown}: measured {acc.fmt()} % vs claimed {100 * float(c_acc):.2f} % "
                f"({_signed(acc.mean - float(c_acc))} points)"
            )
            if c_loss is not None:
                line += f", final train loss {loss.fmt(1, 3)} vs claimed {float(c_loss):.2f}"
            text.append(line + ".")
        claimed_gap = _claimed_gap(preset)
        if claimed_gap is not None:
            holds = d.mean > 0
            text.append(
                f"The assignment's gap was {100 * claimed_gap:.2f} points in Adam's favour; "
                + ("the direction holds here" if holds else "here the direction does not hold")
                + f" and the measured gap is {_signed(d.mean)} points."
            )
    tuned = _tuned_summary(ctx, v)
    if tuned:
        text.append(tuned)
    doc.add("**Discussion.** " + " ".join(t for t in text if t), "")


def _claimed_gap(preset: Preset) -> float | None:
    a, s = preset.claim("adam", "test_acc"), preset.claim("sgd", "test_acc")
    return None if a is None or s is None else float(a) - float(s)


def _sgd_by_lr(
    ctx: Context, base: Variant | None, tuned: Variant | None
) -> dict[float, list[Measured]]:
    by_lr: dict[float, list[Measured]] = defaultdict(list)
    for v in (base, tuned):
        if v is None:
            continue
        for r in v.runs:
            if r.params.get("optimizer") == "sgd":
                by_lr[float(r.params.get("optimizer.lr", "nan"))].append(r)
    return dict(sorted(by_lr.items()))


def _tuned_summary(ctx: Context, base: Variant) -> str:
    tuned = _matching(ctx, "optimizers_tuned", base)
    if tuned is None:
        return ""
    by_lr = _sgd_by_lr(ctx, base, tuned)
    adam = base.groups("optimizer").get("adam", [])
    if not by_lr or not adam:
        return ""
    best_lr = max(by_lr, key=lambda lr: stat(by_lr[lr], final_acc).mean)
    d = paired_difference(adam, by_lr[best_lr])
    return (
        f"With a tuned lr ({best_lr:g}, see experiment=optimizers_tuned) SGD reaches "
        f"{stat(by_lr[best_lr], final_acc).fmt()} %, and Adam's lead becomes {_signed(d.mean)} "
        f"points."
    )


def section_optimizers_tuned(
    doc: Doc, ctx: Context, preset: Preset, v: Variant, suffix: str
) -> None:
    base = _matching(ctx, str(preset.notes.get("baseline", "optimizers")), v)
    by_lr = _sgd_by_lr(ctx, base, v)
    adam = base.groups("optimizer").get("adam", []) if base else []
    rows = []
    for lr, runs in by_lr.items():
        source = "optimizers_tuned" if runs[0] in v.runs else "optimizers"
        rows.append(
            [
                "sgd",
                f"{lr:g}",
                str(len(runs)),
                stat(runs, final_train_loss).fmt(1, 3),
                stat(runs, final_acc).fmt(),
                f"experiment={source}",
            ]
        )
    if adam:
        rows.append(
            [
                "adam",
                adam[0].params.get("optimizer.lr", "?"),
                str(len(adam)),
                stat(adam, final_train_loss).fmt(1, 3),
                stat(adam, final_acc).fmt(),
                "experiment=optimizers",
            ]
        )
    doc.table(["optimizer", "lr", "n", "final train loss", "final test acc (%)", "runs from"], rows)
    if base is None:
        doc.add(
            "No run of experiment=optimizers on the same budget is in the store, so SGD at lr "
            "0.01 and Adam are missing from this comparison: run "
            f"`python train.py experiment=optimizers{' ' + v.extra if v.extra else ''}`.",
            "",
        )
    path = _figure_path(doc, preset.name, suffix)
    _lr_figure(by_lr, adam, path)
    doc.figure(path, "final test accuracy vs SGD learning rate")
    text = []
    if by_lr:
        best_lr = max(by_lr, key=lambda lr: stat(by_lr[lr], final_acc).mean)
        best = stat(by_lr[best_lr], final_acc)
        text.append(f"The best SGD learning rate on this grid is {best_lr:g} ({best.fmt()} %).")
        edge = best_lr in (min(by_lr), max(by_lr)) and len(by_lr) > 1
        if edge:
            text.append("It lies at the edge of the grid, so a wider grid may do better still.")
        top = max((final_acc(r) or 0.0) for runs in by_lr.values() for r in runs)
        for lr, runs in by_lr.items():
            failed = [r for r in runs if (final_acc(r) or 0.0) < 0.5]
            if failed and top > 0.9:
                why = (
                    "diverged: too high a learning rate for SGD with momentum 0.9"
                    if lr > best_lr
                    else "had not left the initial plateau: too low a learning rate for this budget"
                )
                text.append(
                    f"At lr {lr:g}, {len(failed)} of {len(runs)} seed(s) ended below 50 % test "
                    f"accuracy while other runs pass 90 % ({why}); that drags its mean down."
                )
        if adam:
            text.append(_tuned_verdict(adam, by_lr[best_lr]))
    doc.add("**Discussion.** " + " ".join(text), "")


def _tuned_verdict(adam: list[Measured], sgd: list[Measured]) -> str:
    d = paired_difference(adam, sgd)
    clear = is_clear(d)
    lr = adam[0].params.get("optimizer.lr")
    if d.mean > 0 and clear:
        return (
            f"Adam (lr {lr}, untuned) still beats tuned SGD by {points(d)} ({verdict(d)}): "
            '"Adam beats SGD" survives tuning at this budget.'
        )
    if d.mean > 0:
        return (
            f"Adam (lr {lr}, untuned) is ahead of tuned SGD by {points(d)} ({verdict(d)}): "
            '"Adam beats SGD" is not shown once SGD is tuned.'
        )
    if clear:
        return (
            f"Tuned SGD beats Adam (lr {lr}) by {points(d)} ({verdict(d)}): "
            '"Adam beats SGD" does not survive tuning at this budget.'
        )
    return (
        f"Tuned SGD is ahead of Adam (lr {lr}) by {points(d)} ({verdict(d)}): tuned, the two "
        'are level and "Adam beats SGD" does not survive tuning at this budget.'
    )


def _lr_figure(by_lr: dict[float, list[Measured]], adam: list[Measured], path: Path) -> None:
    from ...plots import plt

    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    if by_lr:
        lrs = list(by_lr)
        stats = [stat(by_lr[lr], final_acc) for lr in lrs]
        ax.errorbar(
            lrs,
            [100 * s.mean for s in stats],
            # A spread over seeds cannot take accuracy below 0 or above 100 %: clipped there.
            yerr=[
                [min(100 * s.std, 100 * s.mean) for s in stats],
                [min(100 * s.std, 100 - 100 * s.mean) for s in stats],
            ],
            marker="o",
            capsize=4,
            label="SGD (momentum 0.9): mean ± std, dots = seeds",
        )
        for lr, s in zip(lrs, stats, strict=True):
            ax.annotate(
                f"{100 * s.mean:.2f}",
                (lr, 100 * s.mean),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                fontsize=8,
            )
        for lr in lrs:
            seeds = [100 * acc for acc in (final_acc(r) for r in by_lr[lr]) if acc is not None]
            ax.scatter([lr] * len(seeds), seeds, color="tab:blue", alpha=0.35, s=14)
        ax.set_xscale("log")
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
        ax.minorticks_off()
    if adam:
        s = stat(adam, final_acc)
        ax.axhline(
            100 * s.mean,
            color="tab:orange",
            label=f"Adam lr {adam[0].params.get('optimizer.lr')}: {s.fmt()} %",
        )
        if s.n > 1:
            ax.axhspan(
                100 * (s.mean - s.std), 100 * (s.mean + s.std), color="tab:orange", alpha=0.2
            )
    ax.set_xlabel("SGD learning rate")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title("final test accuracy vs SGD learning rate")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)
