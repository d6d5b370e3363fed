"""What a variant's runs were run with and what they cost, in words; and when two presets' runs
are on the same budget. Read from the logged params and tags, never from the preset, so the
text describes what ran.
"""

from __future__ import annotations

from .runs import Measured, Variant

TRAIN_IMAGES = {"mnist": 60000, "fashion_mnist": 60000}


def total_epochs(params: dict[str, str]) -> int:
    """Phases, when present, fix the length of a run (the engine's rule, from logged params)."""
    phase_epochs = [
        int(v)
        for k, v in params.items()
        if k.startswith("schedule.phases.") and k.endswith(".epochs")
    ]
    return sum(phase_epochs) if phase_epochs else int(params.get("trainer.epochs", "0") or 0)


def train_images(params: dict[str, str]) -> int:
    limit = params.get("dataset.train_limit", "null")
    full = TRAIN_IMAGES.get(params.get("dataset.name", ""), 60000)
    return min(int(limit), full) if limit not in ("null", "None", "") else full


def budget_key(r: Measured) -> tuple[str, int, int, str]:
    """What makes two presets' runs comparable: data, images, epochs, batch size."""
    p = r.params
    return (
        p.get("dataset.name", "?"),
        train_images(p),
        total_epochs(p),
        p.get("trainer.batch_size", "?"),
    )


def settings_line(v: Variant) -> str:
    p = v.runs[0].params
    epochs = total_epochs(p)
    images = train_images(p)
    bs = p.get("trainer.batch_size", "?")
    steps = (images // int(bs)) * epochs if bs.isdigit() else "?"
    seeds = sorted({r.seed for r in v.runs}, key=lambda s: (len(s), s))
    return (
        f"{p.get('dataset.name', '?')}, {images:,} training images, {epochs} epoch(s), "
        f"batch {bs} ({steps} mini-batches per run), {_optimizer_text(v)}, "
        f"schedule {v.param('schedule')}, augment "
        f"{v.param('augment')}, test accuracy every {v.param('trainer.log_every')} mini-batches "
        f"and at each epoch end, seeds {', '.join(seeds)}"
    )


def _optimizer_text(v: Variant) -> str:
    """The optimizer(s) as run: the phases when the schedule has them, else the group."""
    p = v.runs[0].params
    phases = []
    i = 0
    while f"schedule.phases.{i}.epochs" in p:
        pre = f"schedule.phases.{i}.optimizer."
        name = p.get(pre + "name", p.get("optimizer", "?"))
        extra = f", momentum {p[pre + 'momentum']}" if pre + "momentum" in p else ""
        phases.append(
            f"{p[f'schedule.phases.{i}.epochs']} epoch(s) {name} (lr {p.get(pre + 'lr', '?')}"
            f"{extra})"
        )
        i += 1
    if phases:
        return "phases: " + ", then ".join(phases)
    return f"optimizer {v.param('optimizer')} (lr {v.param('optimizer.lr')})"


def fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min"


def device_text(v: Variant) -> str:
    threads = sorted({r.tags.get("num_threads", "?") for r in v.runs})
    if v.device == "cpu":
        return f"CPU ({', '.join(threads)} thread{'' if threads == ['1'] else 's'})"
    return v.device
