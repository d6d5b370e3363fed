"""The speedrun section: what it costs in training time to reach the accuracy bar, on the device
the runs had.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from ..document import Context, Doc, _plot
from ..presets import Preset
from ..runs import Variant
from ..settings import device_text, total_epochs
from ..stats import Stat, final_acc, pct


def section_speedrun(doc: Doc, ctx: Context, preset: Preset, v: Variant, suffix: str) -> None:
    """Every timed run is listed: on a shared machine repeated timings of one config differ."""
    target = preset.notes.get("target") or {}
    bar = float(target.get("test_acc", 0.99))
    rows = []
    for r in sorted(v.runs, key=lambda r: r.start_ms):
        acc = final_acc(r)
        started = datetime.fromtimestamp(r.start_ms / 1000, timezone.utc).strftime("%H:%M")
        rows.append(
            [
                device_text(v),
                r.seed,
                started,
                str(total_epochs(r.params)),
                r.params.get("trainer.batch_size", "?"),
                f"{r.summary.train_time_s or math.nan:.2f}",
                pct(acc),
                "yes" if acc is not None and acc >= bar else "no",
            ]
        )
    doc.table(
        [
            "device",
            "seed",
            "started (UTC)",
            "epochs",
            "batch",
            "train time (s)",
            "final test acc (%)",
            f"≥ {100 * bar:.1f} %",
        ],
        rows,
    )
    _plot(doc, v.runs, "seed", preset.name, suffix, "speedrun test accuracy")
    times = [r.summary.train_time_s for r in v.runs if r.summary.train_time_s is not None]
    accs = [a for a in (final_acc(r) for r in v.runs) if a is not None]
    fastest = min(times) if times else math.nan
    all_pass = bool(accs) and all(a >= bar for a in accs)
    text = [
        f"On {device_text(v)} the fastest of {len(times)} timed run(s) trains in "
        f"{fastest:.2f} s"
        + (f" (slowest {max(times):.2f} s)" if len(times) > 1 else "")
        + f"; final test accuracy {Stat(accs).fmt()} %, "
        + ("every run at or above" if all_pass else "not every run at or above")
        + f" the {100 * bar:.1f} % bar.",
        "Train time is the engine's train_time_s: the training mini-batches and any evaluation "
        "inside an epoch, without data loading, model building and the evaluation at epoch end.",
    ]
    if v.device == "cpu" and len(times) > 1:
        text.append(
            "The repeated timings of one configuration differ because the CPU is shared with "
            "other work; the fastest is the best estimate of what the configuration costs."
        )
    gpu_target = target.get("train_time_s_gpu")
    if gpu_target is not None:
        met = fastest <= float(gpu_target) and all_pass
        text.append(
            f"The GPU target is ≤ {float(gpu_target):g} s on an H100/H200"
            + (
                f": {'met' if met else 'not met'}."
                if v.device != "cpu"
                else "; these runs are on CPU, so they do not answer that."
            )
        )
    doc.add("**Discussion.** " + " ".join(text), "")
