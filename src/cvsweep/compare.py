"""The comparison report of a set of runs, built from MLflow data only.

Used by the sweep callback (the children of one parent) and by `cvsweep compare` (any runs), so
a report can always be rebuilt from the store, never from files a job happened to leave.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tracking import with_retry

THRESHOLDS = (0.90, 0.95, 0.98)


@dataclass
class RunSummary:
    run_id: str
    name: str
    status: str
    overrides: dict[str, str]
    params: dict[str, str]
    group_key: str
    final_test_acc: float | None
    best_test_acc: float | None
    final_train_loss: float | None
    train_time_s: float | None
    test_acc: list[tuple[int, float]] = field(default_factory=list)
    failure: str = ""

    def batches_to(self, threshold: float) -> int | None:
        return next((step for step, acc in self.test_acc if acc >= threshold), None)


def parse_overrides(text: str) -> dict[str, str]:
    pairs = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep and not key.startswith(("tracking.", "hydra")):
            pairs[key.lstrip("+~")] = value
    return pairs


def summarize(client: Any, run: Any) -> RunSummary:
    tags, metrics = run.data.tags, run.data.metrics
    history = with_retry(lambda: client.get_metric_history(run.info.run_id, "test_acc"))
    points = sorted((m.step, m.value) for m in history)
    return RunSummary(
        run_id=run.info.run_id,
        name=run.info.run_name or run.info.run_id,
        status=run.info.status,
        overrides=parse_overrides(tags.get("overrides", "")),
        params=dict(run.data.params),
        group_key=tags.get("group_key", run.info.run_id),
        final_test_acc=metrics.get("final_test_acc"),
        best_test_acc=metrics.get("best_test_acc"),
        final_train_loss=metrics.get("final_train_loss"),
        train_time_s=metrics.get("train_time_s"),
        test_acc=points,
        failure=tags.get("failure_reason", ""),
    )


def swept_keys(runs: list[RunSummary]) -> list[str]:
    """Keys whose value differs between runs (seed is a repeat, not a compared key)."""
    keys: dict[str, set[str]] = defaultdict(set)
    for r in runs:
        for k, v in r.overrides.items():
            keys[k].add(v)
    order = []
    for r in runs:
        for k in r.overrides:
            if k not in order and k != "seed" and len(keys[k]) > 1:
                order.append(k)
    return order


def value_of(run: RunSummary, key: str) -> str:
    if key in run.overrides:
        return run.overrides[key]
    return run.params.get(key, "?")


def _fmt_acc(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def _mean_std(values: list[float]) -> str:
    if not values:
        return ""
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def write_report(
    runs: list[RunSummary], out_dir: Path, by: list[str] | None = None, title: str = "Comparison"
) -> list[Path]:
    """comparison.md, comparison.csv and comparison_<key>.png for each compared key."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = by or swept_keys(runs)
    header = [
        "run",
        "run_id",
        "status",
        "final_test_acc",
        "best_test_acc",
        "final_train_loss",
        *(f"batches_to_{int(100 * t)}" for t in THRESHOLDS),
        "train_time_s",
    ]
    rows = []
    for r in runs:
        rows.append(
            [
                r.name,
                r.run_id,
                r.status if not r.failure else f"{r.status} ({r.failure})",
                _fmt_acc(r.final_test_acc),
                _fmt_acc(r.best_test_acc),
                "" if r.final_train_loss is None else f"{r.final_train_loss:.4f}",
                *("" if r.batches_to(t) is None else str(r.batches_to(t)) for t in THRESHOLDS),
                "" if r.train_time_s is None else f"{r.train_time_s:.1f}",
            ]
        )
    csv_path = out_dir / "comparison.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)

    md = [f"# {title}", "", f"{len(runs)} runs; accuracies in %.", ""]
    md.append("| " + " | ".join(header) + " |")
    md.append("|" + "---|" * len(header))
    md.extend("| " + " | ".join(row) + " |" for row in rows)
    failed = [r for r in runs if r.status not in ("FINISHED",)]
    if failed:
        md += [
            "",
            f"**{len(failed)} run(s) did not finish:** "
            + ", ".join(f"{r.name} ({r.status})" for r in failed),
        ]
    groups: dict[str, list[RunSummary]] = defaultdict(list)
    for r in runs:
        if r.status == "FINISHED" and r.final_test_acc is not None:
            groups[r.group_key].append(r)
    if groups:
        md += [
            "",
            "## Groups (mean ± std over seeds)",
            "",
            "| group | n | final test acc | best test acc |",
            "|---|---:|---|---|",
        ]
        for members in groups.values():
            label = (
                " ".join(f"{k}={v}" for k, v in members[0].overrides.items() if k != "seed")
                or "defaults"
            )
            md.append(
                f"| {label} | {len(members)} | "
                f"{_mean_std([m.final_test_acc for m in members if m.final_test_acc is not None])}"
                f" | {_mean_std([m.best_test_acc for m in members if m.best_test_acc is not None])}"
                " |"
            )
    paths = [csv_path]
    for key in keys:
        png = out_dir / f"comparison_{key.replace('/', '_')}.png"
        plot_by_key(runs, key, png)
        paths.append(png)
        md += ["", f"## By {key}", "", f"![test accuracy by {key}]({png.name})"]
    md_path = out_dir / "comparison.md"
    md_path.write_text("\n".join(md) + "\n")
    return [md_path, *paths]


def plot_by_key(runs: list[RunSummary], key: str, path: Path) -> Path:
    """Test accuracy vs mini-batches, one line per value of key, mean over the other runs."""
    from .plots import plt

    by_value: dict[str, list[RunSummary]] = defaultdict(list)
    for r in runs:
        if r.test_acc:
            by_value[value_of(r, key)].append(r)
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    lowest = math.inf
    for value, members in sorted(by_value.items()):
        steps = sorted({s for m in members for s, _ in m.test_acc})
        curves = [dict(m.test_acc) for m in members]
        mean, lo, hi = [], [], []
        for s in steps:
            vals = [100 * c[s] for c in curves if s in c]
            mu = statistics.fmean(vals)
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            mean.append(mu)
            lo.append(mu - sd)
            hi.append(mu + sd)
        lowest = min([lowest, *(v for v in lo if math.isfinite(v))])
        (line,) = ax.plot(steps, mean, label=f"{key}={value} (n={len(members)})")
        if len(members) > 1:
            ax.fill_between(steps, lo, hi, alpha=0.2, color=line.get_color())
    ax.set_xlabel("mini-batch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"test accuracy by {key}")
    ax.grid(alpha=0.3)
    if by_value:
        ax.legend()
        if math.isfinite(lowest):
            ax.set_ylim(max(0.0, lowest - 2), 100.5)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sweep_report(client: Any, parent: str, sweep_dir: Path, results: list[dict[str, Any]]) -> str:
    """The sweep's report from its children in the store, logged to the parent, which it closes.

    `results` are the jobs' `job_result.json` contents: a job skipped because an identical run
    had finished is not a child of this parent, but its run belongs in the report all the same.
    Returns the markdown, for the console.
    """
    children = with_retry(
        lambda: client.search_runs(
            [client.get_run(parent).info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent}'",
            max_results=5000,
        )
    )
    ids = {r.info.run_id for r in children}
    extra = [
        with_retry(lambda rid=r["run_id"]: client.get_run(rid))
        for r in results
        if r.get("run_id") and r["run_id"] not in ids
    ]
    runs = sorted((summarize(client, r) for r in [*children, *extra]), key=lambda r: r.name)
    name = client.get_run(parent).info.run_name
    paths = write_report(runs, sweep_dir, title=name)
    for path in paths:
        with_retry(lambda p=path: client.log_artifact(parent, str(p)))
    no_run = [r for r in results if not r.get("run_id")]
    bad = any(r.status != "FINISHED" for r in runs) or bool(no_run)
    with_retry(lambda: client.set_terminated(parent, "FAILED" if bad else "FINISHED"))
    return (sweep_dir / "comparison.md").read_text()
