"""`cvsweep report`: docs/results.md, rebuilt from the MLflow store alone.

Each question of the course assignment is an experiment preset (conf/experiment/<name>.yaml). The
preset is the single source of the question's text, the assignment's claims and its budget (its
`experiment:` notes node); the store is the single source of what was measured. This module joins
the two: one section per preset with the command, the settings actually run, claimed vs measured
(mean ± std over seeds), a figure and a discussion written from the numbers, so the document can
never say more than the runs show and can be regenerated at any time with one command.

Runs belong to a preset through the `experiment` param that job.py logs for the chosen preset.
Runs of one preset launched with extra overrides (a reduced CPU budget, a quick look) form a
separate *variant*, keyed by those overrides and the device, and are reported separately, so
numbers from different budgets are never averaged together.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .compare import RunSummary, plot_by_key, summarize
from .store_errors import StoreError, open_client, store_command
from .tracking import sqlite_path, with_retry

PRESETS = (
    "shapes",
    "optimizers",
    "optimizers_tuned",
    "target99",
    "fashion_two_phase",
    "fashion_better",
    "augmentation",
    "augmentation_long",
    "speedrun",
)
TRAIN_IMAGES = {"mnist": 60000, "fashion_mnist": 60000}
THRESHOLDS = (0.85, 0.90)
TIMED = ("speedrun",)  # presets whose point is a timing: repeated runs all count
# Override keys that do not change what a run measures (where it is logged, how it is shown).
IGNORED_OVERRIDE_PREFIXES = ("tracking.", "hydra", "experiment", "trainer.progress")


class ReportError(RuntimeError):
    """The store cannot be read; the message says which store and what to do."""


# --------------------------------------------------------------------------- presets
@dataclass
class Preset:
    """What conf/experiment/<name>.yaml says: notes (question, claims, budget) and the sweep."""

    name: str
    notes: dict[str, Any]
    sweep: dict[str, str]

    @property
    def command(self) -> str:
        return f"python train.py experiment={self.name}"

    @property
    def compared(self) -> list[str]:
        """Swept keys with several values, seed excepted (seeds are repeats, not a comparison)."""
        return [k for k, v in self.sweep.items() if k != "seed" and "," in str(v)]

    def claim(self, *path: str) -> Any:
        node: Any = self.notes.get("claims") or {}
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node


def load_presets(conf: Path) -> dict[str, Preset]:
    """Read every preset's notes and sweep params straight from the YAML (no Hydra compose)."""
    from omegaconf import OmegaConf

    presets = {}
    for name in PRESETS:
        path = conf / "experiment" / f"{name}.yaml"
        notes: dict[str, Any] = {}
        sweep: dict[str, str] = {}
        if path.is_file():
            raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            assert isinstance(raw, dict)
            notes = dict(raw.get("experiment") or {})
            params = ((raw.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
            sweep = {str(k): str(v) for k, v in params.items()}
        presets[name] = Preset(name, notes, sweep)
    return presets


# --------------------------------------------------------------------------- runs
@dataclass
class Measured:
    """One finished run: the comparison summary plus what the report needs beyond it."""

    summary: RunSummary
    tags: dict[str, str]
    metrics: dict[str, float]
    start_ms: int
    end_ms: int

    @property
    def params(self) -> dict[str, str]:
        return self.summary.params

    def value(self, key: str) -> str:
        if key in self.summary.overrides:
            return self.summary.overrides[key]
        return self.params.get(key, "?")

    @property
    def seed(self) -> str:
        return self.params.get("seed", "?")


@dataclass
class Variant:
    """The runs of one preset made with the same extra overrides on the same kind of device."""

    preset: str
    extra: str  # overrides beyond the preset's own, e.g. "dataset.train_limit=10000"
    device: str
    runs: list[Measured] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.extra or "the preset as written"

    def groups(self, key: str) -> dict[str, list[Measured]]:
        by: dict[str, list[Measured]] = defaultdict(list)
        for r in sorted(self.runs, key=lambda r: (r.value(key), r.seed)):
            by[r.value(key)].append(r)
        return dict(by)

    def param(self, key: str) -> str:
        values = sorted({r.params.get(key, "?") for r in self.runs})
        return ", ".join(values)

    @property
    def train_time_s(self) -> float:
        return sum(r.summary.train_time_s or 0.0 for r in self.runs)

    @property
    def elapsed_s(self) -> float:
        """Sum of each run's start-to-end time (runs of one variant may be days apart)."""
        return sum(r.end_ms - r.start_ms for r in self.runs) / 1000

    @property
    def latest_ms(self) -> int:
        return max(r.end_ms for r in self.runs)


def open_store(uri: str | None) -> tuple[Any, str]:
    """(MlflowClient, uri) for an existing store; never creates one (a typo must not pass)."""
    if uri and "://" not in uri:  # a bare path to the SQLite file
        uri = f"sqlite:///{Path(uri).resolve()}"
    try:
        return open_client(
            uri,
            missing_hint="Run the presets first (python train.py experiment=<name>) or pass "
            "--tracking-uri sqlite:///path/to/mlflow.db.",
        )
    except StoreError as exc:
        raise ReportError(str(exc)) from None


def _search(client: Any, filter_string: str) -> list[Any]:
    experiments = with_retry(lambda: client.search_experiments(max_results=1000))
    ids = [e.experiment_id for e in experiments]
    if not ids:
        return []
    found: list[Any] = []
    token = None
    while True:
        page = with_retry(
            lambda t=token: client.search_runs(
                ids, filter_string=filter_string, max_results=1000, page_token=t
            )
        )
        found.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return found


def preset_runs(client: Any, preset: Preset) -> tuple[list[Variant], int]:
    """The preset's finished runs split into variants (latest first), and the unfinished count."""
    runs = _search(client, f"params.experiment = '{preset.name}'")
    unfinished = sum(1 for r in runs if r.info.status != "FINISHED")
    # The same config run twice (tracking.skip_finished=false) is one measurement, not two
    # seeds; except for timings, where each repeat is a measurement of its own.
    latest: dict[str, Any] = {}
    for run in sorted(runs, key=lambda r: r.info.end_time or 0):
        if run.info.status == "FINISHED":
            key = run.info.run_id if preset.name in TIMED else run.data.tags.get("config_hash")
            latest[key or run.info.run_id] = run
    runs = list(latest.values())
    skip = set(preset.compared) | {"seed"}
    variants: dict[tuple[str, str], Variant] = {}
    for run in runs:
        summary = summarize(client, run)
        # Hydra writes booleans back as True/False; the preset may say true/false.
        own = {k: str(v).lower() for k, v in preset.sweep.items() if k not in skip}
        extra = " ".join(
            f"{k}={v}"
            for k, v in sorted(summary.overrides.items())
            if k not in skip
            and not k.startswith(IGNORED_OVERRIDE_PREFIXES)
            and own.get(k) != v.lower()
        )
        device = run.data.tags.get("device", "?")
        key = (extra, device)
        variants.setdefault(key, Variant(preset.name, extra, device))
        variants[key].runs.append(
            Measured(
                summary=summary,
                tags=dict(run.data.tags),
                metrics=dict(run.data.metrics),
                start_ms=int(run.info.start_time or 0),
                end_ms=int(run.info.end_time or run.info.start_time or 0),
            )
        )
    ordered = sorted(variants.values(), key=lambda v: v.latest_ms, reverse=True)
    return ordered, unfinished


# --------------------------------------------------------------------------- numbers
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


def paired_difference(a: list[Measured], b: list[Measured]) -> Stat:
    """Per-seed differences a - b of final test accuracy (same seed = same init and data order);
    unpaired difference of means when the seeds do not match."""
    acc_a = {r.seed: final_acc(r) for r in a}
    acc_b = {r.seed: final_acc(r) for r in b}
    common = sorted(set(acc_a) & set(acc_b))
    diffs = [acc_a[s] - acc_b[s] for s in common if acc_a[s] is not None and acc_b[s] is not None]
    if diffs:
        return Stat(diffs)
    return Stat([stat(a, final_acc).mean - stat(b, final_acc).mean])


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


# --------------------------------------------------------------------------- document
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


# ----------------------------------------------------------------- 1. shapes
def _shape_report(client: Any, run_id: str) -> dict[str, Any] | None:
    import json

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = with_retry(lambda: client.download_artifacts(run_id, "shape_report.json", tmp))
            return json.loads(Path(path).read_text())
        except Exception:
            return None


def section_shapes(doc: Doc, ctx: Context, preset: Preset, v: Variant, suffix: str) -> None:
    latest: dict[str, Measured] = {}
    for r in sorted(v.runs, key=lambda r: r.end_ms):
        latest[r.value("model")] = r
    reports = {m: _shape_report(ctx.client, r.summary.run_id) for m, r in latest.items()}
    rows, verdicts = [], []
    for model, rep in sorted(reports.items()):
        claimed = preset.claim(model, "total_params")
        measured = rep["total_params"] if rep else None
        conv1 = next((row for row in (rep or {}).get("rows", []) if row["layer"] == "conv1"), None)
        ok = claimed is not None and measured == int(claimed)
        rows.append(
            [
                f"model={model}",
                str(conv1["output_shape"][1]) if conv1 else "?",
                "–" if claimed is None else f"{int(claimed):,}",
                "–" if measured is None else f"{measured:,}",
                "yes" if ok else "no",
            ]
        )
        if measured is not None and claimed is not None:
            off = measured - int(claimed)
            verdicts.append(
                f"model={model}: measured {measured:,} trainable parameters, claimed "
                f"{int(claimed):,} ({'the same' if ok else f'off by {off:+,}'})."
            )
    doc.table(["model", "conv1 channels", "claimed total", "measured total", "match"], rows)
    for model, rep in sorted(reports.items()):
        if not rep:
            doc.add(f"model={model}: the run has no shape_report.json artifact.", "")
            continue
        doc.add(f"Measured shape report, model={model}, batch {rep['batch_size']}:", "")
        body = []
        for row in rep["rows"]:
            shape_in = "" if not row["input_shape"] else str(tuple(row["input_shape"]))
            body.append(
                [
                    row["layer"],
                    row["kind"],
                    shape_in,
                    str(tuple(row["output_shape"])),
                    f"{row['params']:,}",
                ]
            )
        body.append(["**total**", "", "", "", f"**{rep['total_params']:,}**"])
        doc.table(
            ["layer", "kind", "input shape", "output shape", "trainable params"],
            body,
            "|---|---|---|---|---:|",
        )
    if reports and all(reports.values()):
        path = _figure_path(doc, preset.name, suffix)
        _shapes_figure(reports, path)
        doc.figure(path, "trainable parameters per layer")
    doc.add(
        "**Discussion.** "
        + " ".join(verdicts)
        + (
            " The two totals differ only through conv1's output channels, which feed conv2: "
            "the question's 16-channel network is the one `model=cnn` builds; the hand-written "
            "table computed the 6-channel variant."
            if len(verdicts) == 2
            else ""
        ),
        "",
    )


def _shapes_figure(reports: dict[str, dict[str, Any]], path: Path) -> None:
    from .plots import plt

    layers = [r["layer"] for r in next(iter(reports.values()))["rows"] if r["params"]]
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    width = 0.8 / max(len(reports), 1)
    for i, (model, rep) in enumerate(sorted(reports.items())):
        by_layer = {r["layer"]: r["params"] for r in rep["rows"]}
        xs = [j + i * width for j in range(len(layers))]
        bars = ax.bar(
            xs,
            [by_layer.get(name, 0) for name in layers],
            width,
            label=f"model={model} (total {rep['total_params']:,})",
        )
        ax.bar_label(bars, fmt="{:,.0f}", fontsize=7)
    ax.set_xticks([j + width * (len(reports) - 1) / 2 for j in range(len(layers))], layers)
    ax.set_ylabel("trainable parameters")
    ax.set_title("trainable parameters per layer")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------- 2. optimizers
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


def _claim_num(value: Any, scale: float, digits: int) -> str:
    return "–" if value is None else f"{scale * float(value):.{digits}f}"


def _signed(x: float) -> str:
    return f"{100 * x:+.2f}"


def _claimed_gap(preset: Preset) -> float | None:
    a, s = preset.claim("adam", "test_acc"), preset.claim("sgd", "test_acc")
    return None if a is None or s is None else float(a) - float(s)


def _matching(ctx: Context, preset: str, like: Variant) -> Variant | None:
    """The other preset's latest variant on the same budget (data, images, epochs, batch)."""
    want = {budget_key(r) for r in like.runs}
    for other in ctx.variants.get(preset, []):
        if {budget_key(r) for r in other.runs} == want:
            return other
    return None


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
    from .plots import plt

    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    if by_lr:
        lrs = list(by_lr)
        stats = [stat(by_lr[lr], final_acc) for lr in lrs]
        ax.errorbar(
            lrs,
            [100 * s.mean for s in stats],
            yerr=[100 * s.std for s in stats],
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


# ----------------------------------------------------------------- 3. target99
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
    met = acc.mean >= target
    text = [
        f"Mean final test accuracy {acc.fmt()} % over {acc.n} seed(s): the question's 95 % bar is "
        + ("passed" if acc.mean > 0.95 else "not passed")
        + f", and this preset's target of {100 * target:.2f} % is "
        + ("met." if met else "not met."),
    ]
    if claimed is not None:
        reached = "matched or beaten" if acc.mean >= float(claimed) else "not reached"
        text.append(
            f"The assignment's {100 * float(claimed):.2f} % answer is {reached} "
            f"({_signed(acc.mean - float(claimed))} points)."
        )
    doc.add("**Discussion.** " + " ".join(text), "")


def _has_artifact(client: Any, run_id: str, name: str) -> bool:
    try:
        return any(a.path == name for a in with_retry(lambda: client.list_artifacts(run_id)))
    except Exception:
        return False


def _history_table(client: Any, run_id: str, limit: int = 20) -> list[list[str]]:
    series = {}
    for key in ("train_acc", "test_acc", "lr"):
        hist = with_retry(lambda k=key: client.get_metric_history(run_id, k))
        series[key] = {m.step: m.value for m in hist}
    steps = sorted(series["test_acc"])
    if len(steps) > limit:
        steps = steps[: limit // 2] + steps[-limit // 2 :]
    return [
        [
            str(s),
            pct(series["train_acc"].get(s)),
            pct(series["test_acc"].get(s)),
            f"{series['lr'].get(s, math.nan):.3e}",
        ]
        for s in steps
    ]


# ----------------------------------------------------------------- 4. fashion
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
    text = [
        f"After {n1} SGD epoch(s) the test accuracy is {p1.fmt()} %"
        + (f" (claimed {100 * float(c1):.0f} %: {_holds(p1.mean, float(c1))})" if c1 else "")
        + f"; after the {n2} Adam epoch(s) it is {final.fmt()} %"
        + (f" (claimed {100 * float(c2):.0f} %: {_holds(final.mean, float(c2))})." if c2 else ".")
    ]
    if final.n and p1.n:
        text.append(f"The Adam phase adds {_signed(final.mean - p1.mean)} points.")
    doc.add("**Discussion.** " + " ".join(text), "")


def _holds(measured: float, claimed: float, tol: float = 0.005) -> str:
    if measured >= claimed - tol:
        return "holds"
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


# ----------------------------------------------------------------- 5. augmentation
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


def _reach(runs: list[Measured], threshold: float) -> tuple[float | None, str]:
    """(mean mini-batches to threshold over the runs that got there, words for it)."""
    reached = [b for b in (batches_to(r, threshold) for r in runs) if b is not None]
    last = max((r.summary.test_acc[-1][0] for r in runs if r.summary.test_acc), default=0)
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
        if b90 is None:
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
            smaller_gap = gap_aug.mean < gap_plain.mean
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


def _float(x: int | None) -> float | None:
    return None if x is None else float(x)


# ----------------------------------------------------------------- 6. speedrun
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


SECTIONS: dict[str, Section] = {
    "shapes": section_shapes,
    "optimizers": section_optimizers,
    "optimizers_tuned": section_optimizers_tuned,
    "target99": section_target99,
    "fashion_two_phase": section_fashion_two_phase,
    "fashion_better": section_fashion_better,
    "augmentation": section_augmentation,
    "augmentation_long": section_augmentation,
    "speedrun": section_speedrun,
}


# --------------------------------------------------------------------------- assembly
def _section_header(doc: Doc, preset: Preset, index: int) -> None:
    notes = preset.notes
    doc.add(f"## {index}. {notes.get('title', preset.name)} (`experiment={preset.name}`)", "")
    if notes.get("question"):
        doc.add(f"*Question.* {notes['question']}", "")
    doc.add("Command:", "", "```", preset.command, "```", "")
    if notes.get("budget"):
        doc.add(f"The preset's budget: {notes['budget']}.", "")
    if notes.get("quick_look"):
        doc.add(
            f"For a quick look on a smaller budget: `{preset.command} {notes['quick_look']}`.",
            "",
        )


def variant_seeds(preset: Preset, v: Variant) -> str:
    """The variant's seeds as an override value, where they are not the preset's own ones.

    Seeds are left out of a variant's label (they are repeats within it), so a variant run
    with `seed=0,1` would otherwise be shown with a command that runs the preset's seeds.
    """

    def order(seed: str) -> tuple[int, str]:
        return (len(seed), seed)

    ran = sorted({r.seed for r in v.runs}, key=order)
    own = sorted({x.strip() for x in str(preset.sweep.get("seed", "0")).split(",")}, key=order)
    return "" if ran == own or preset.name in TIMED else ",".join(ran)


def _variant_header(
    doc: Doc, ctx: Context, preset: Preset, v: Variant, n_variants: int, index: int
) -> None:
    if n_variants > 1:
        doc.add(f"### Runs {index + 1} of {n_variants}: {v.label}, {device_text(v)}", "")
    seeds = variant_seeds(preset, v)
    extra = " ".join(x for x in (v.extra, f"seed={seeds}" if seeds else "") if x)
    command = preset.command + (" " + extra if extra else "")
    doc.add(
        f"Measured: {len(v.runs)} run(s) on {device_text(v)}, "
        + (
            f"extra overrides `{extra}` (command `{command}`)"
            if extra
            else "the preset's own budget"
        )
        + ".",
        "",
    )
    if preset.name != "shapes":
        doc.add(f"Settings of these runs: {settings_line(v)}.", "")
    if v.extra and preset.name != "shapes":
        doc.add(
            "These runs used a smaller budget than the preset (and the assignment), so the "
            "claims below, made for the full budget, are checked against them only roughly; "
            f"`{preset.command}` runs the full budget.",
            "",
        )
    commits = list(
        dict.fromkeys(
            r.tags["git_commit"][:7]
            for r in sorted(v.runs, key=lambda r: r.start_ms)
            if r.tags.get("git_commit")
        )
    )
    if commits:
        dirty = any(r.tags.get("git_dirty") == "true" for r in v.runs)
        doc.add(
            f"Code: git commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}"
            + (" (with uncommitted changes)" if dirty else "")
            + ", from the runs' tags.",
            "",
        )
    training = (
        "no training"
        if preset.name == "shapes"
        else f"{fmt_seconds(v.train_time_s)} of training (sum of the runs' train_time_s)"
    )
    doc.add(
        f"Wall time: {training}, {fmt_seconds(v.elapsed_s)} in all (the sum of each run's start "
        "to end: data loading, evaluation and logging included).",
        "",
    )


def build(ctx: Context, img_dir: Path, uri: str, out_name: str = "docs/results.md") -> Doc:
    doc = Doc(img_dir)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc.add(
        "# Results: the assignment's questions, measured",
        "",
        f"Generated by `cvsweep report` on {now} from the MLflow store `{_show_uri(uri)}`; "
        f"regenerate with `cvsweep report --tracking-uri {_show_uri(uri)} --out {out_name}`. Every "
        "number below is read from that store; the questions, the assignment's claims and the "
        "presets' budgets come from `conf/experiment/<name>.yaml`. Accuracies are test-set "
        "accuracies in %; ± is the sample standard deviation over seeds, n the number of seeds. "
        "A difference is called clear when it exceeds twice its standard error over seeds. "
        "Where the summary below lists overrides, those runs used a smaller budget than the "
        "preset; each section says exactly which.",
        "",
    )
    rows = []
    for name in PRESETS:
        variants = ctx.variants.get(name, [])
        if not variants:
            rows.append([f"`{name}`", "not run yet", "", "", "", ""])
            continue
        v = variants[0]
        rows.append(
            [
                f"`{name}`",
                str(len(v.runs)),
                device_text(v),
                v.extra or "–",
                "no training" if name == "shapes" else fmt_seconds(v.train_time_s),
                fmt_seconds(v.elapsed_s),
            ]
        )
    doc.add("## Summary of the runs", "")
    doc.table(
        [
            "preset",
            "runs",
            "machine",
            "overrides beyond the preset (budget used)",
            "training time",
            "wall time",
        ],
        rows,
    )
    for i, name in enumerate(PRESETS, start=1):
        preset = ctx.presets[name]
        _section_header(doc, preset, i)
        variants = ctx.variants.get(name, [])
        if ctx.unfinished.get(name):
            doc.add(
                f"{ctx.unfinished[name]} run(s) of this preset did not finish "
                "(failed, killed or still running) and are left out.",
                "",
            )
        if not variants:
            doc.add(f"**Not run yet:** `{preset.command}`", "")
            continue
        for j, v in enumerate(variants):
            _variant_header(doc, ctx, preset, v, len(variants), j)
            SECTIONS[name](doc, ctx, preset, v, "" if j == 0 else f"-{j + 1}")
    return doc


def _show_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _show_uri(uri: str) -> str:
    db = sqlite_path(uri)
    if db is None:
        return uri
    try:
        return f"sqlite:///{db.relative_to(Path.cwd())}"
    except ValueError:
        return uri


def write_results(client: Any, uri: str, out: Path, conf: Path) -> Doc:
    """Build the report and write out + <out dir>/img/*.png; returns the document."""
    presets = load_presets(conf)
    variants: dict[str, list[Variant]] = {}
    unfinished: dict[str, int] = {}
    for name, preset in presets.items():
        variants[name], unfinished[name] = preset_runs(client, preset)
    ctx = Context(client, presets, variants, unfinished)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = build(ctx, out.parent / "img", uri, _show_path(out))
    out.write_text("\n".join(doc.lines).rstrip() + "\n")
    return doc


def report_main(args: argparse.Namespace) -> int:
    """`cvsweep report`: exit 0 with the document written, 2 when the store cannot be read."""
    from .cli import conf_dir

    out = Path(args.out)

    def work(client: Any, uri: str) -> int:
        doc = write_results(client, uri, out, conf_dir())
        print(f"wrote {out} and {len(doc.figures)} figure(s) under {out.parent / 'img'}")
        return 0

    return store_command(lambda: open_store(args.tracking_uri), work, (ReportError,))
