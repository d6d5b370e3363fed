"""The comparison report of a set of runs, built from MLflow data only.

Used by the sweep callback (the children of one parent) and by `cvsweep compare` (any runs), so
a report can always be rebuilt from the store, never from files a job happened to leave.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import json
import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import unused_by_scheduler, unused_with_phases
from .identity import GROUPS, NON_RESULT_KEYS, SWITCH_KEYS, run_name, switch_word
from .tracking import search_all_runs, with_retry

THRESHOLDS = (0.90, 0.95, 0.98)
# Keys that change how a run is shown or stored, not what it computes: never compared or pooled.
# (A preset's name stays: what it changes is in the params, but it names the runs well.)
NOT_COMPARED = tuple(k for k in NON_RESULT_KEYS if k != "experiment")
# Knobs that exercise the code, not the model: no --by key a user means, so never suggested.
INTERNAL = ("trainer.fault_at_step",)
# What a phased run logs for these is what it trained (job.py: the phases' optimizers, their
# total epochs), so that value stands even where the command line's setting went unused.
LOGGED_AS_TRAINED = ("optimizer", "trainer.epochs")
SHOWN_DIFFERING = 8  # differing keys an unknown --by key's message lists at most
STILL_RUNNING = ("RUNNING", "SCHEDULED")  # MLflow's statuses of a run not ended
SWEEP_RUNS = "sweep_runs.json"  # on a sweep's parent run: the runs that make up the sweep
REUSED_MARK = "†"  # after a row's label: its run was trained before this sweep, not in it


class UnknownKeyError(ValueError):
    """A --by key that no compared run has as a param or override."""


@dataclass(frozen=True)
class Origin:
    """Where a run that a sweep reused was trained: the earlier sweep's parent run ("" for a
    run made outside any sweep), so a report can say which numbers this sweep did not train."""

    parent_id: str
    parent_name: str = ""

    def said(self) -> str:
        if not self.parent_id:
            return "a run outside any sweep"
        if not self.parent_name:
            return f"the sweep of parent run {self.parent_id} (no longer in this store)"
        return f"the sweep {self.parent_name!r} (parent run {self.parent_id})"


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
    # Keys whose setting the run did not train with (a phased schedule's phases replaced it).
    unused: frozenset[str] = frozenset()
    # Set where a sweep reused this run: it had finished before the sweep began.
    reused: Origin | None = None

    def batches_to(self, threshold: float) -> int | None:
        return next((step for step, acc in self.test_acc if reached(acc, threshold)), None)


def reached(accuracy: float, threshold: float) -> bool:
    """accuracy >= threshold, for accuracies logged in float32: 90 of 100 right is logged as
    0.8999999762 and must count as 90 %. The slack (1e-6) is far below one image of a test
    set (1e-4 of 10,000), so no accuracy that truly falls short is counted."""
    return accuracy >= threshold - 1e-6


def parse_overrides(text: str) -> dict[str, str]:
    pairs = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep and not key.startswith(("tracking.", "hydra")):
            pairs[key.lstrip("+~")] = value
    return pairs


def logged_phases(params: dict[str, str]) -> list[dict[str, Any]]:
    """A run's schedule.phases as logged (flattened to schedule.phases.N.*); [] without any."""
    phases: dict[int, dict[str, Any]] = defaultdict(lambda: {"optimizer": {}})
    for key, value in params.items():
        found = re.fullmatch(r"schedule\.phases\.(\d+)\.(epochs|optimizer\.(\w+))", key)
        if found and found.group(3):
            phases[int(found.group(1))]["optimizer"][found.group(3)] = value
        elif found:
            phases[int(found.group(1))]["epochs"] = value
    return [phases[i] for i in sorted(phases)]


def unused_keys(params: dict[str, str], overrides: dict[str, str]) -> frozenset[str]:
    """The settings a run did not train with, by the rules the run itself printed its `not
    used` notes with: a schedule setting its scheduler does not read (a step schedule's
    `schedule.min_lr`), and with phases its logged optimizer.* values and such overrides."""
    scheduler = params.get("schedule.scheduler", "")
    logged = [f"{k}=" for k in params if k.startswith("schedule.")]
    ignored = {i.partition("=")[0] for i in unused_by_scheduler(scheduler, logged)}
    phases = logged_phases(params)
    if not phases:
        return frozenset(ignored)
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {"schedule": {"phases": phases}, "optimizer": {"name": params.get("optimizer.name")}}
    )
    keys = {*overrides, *(k for k in params if k.startswith("optimizer."))}
    moot = unused_with_phases(cfg, [f"{k}=" for k in keys])
    return frozenset(ignored | {i.partition("=")[0] for i in moot})


def summarize(client: Any, run: Any) -> RunSummary:
    tags, metrics = run.data.tags, run.data.metrics
    history = with_retry(lambda: client.get_metric_history(run.info.run_id, "test_acc"))
    points = sorted((m.step, m.value) for m in history)
    overrides = parse_overrides(tags.get("overrides", ""))
    return RunSummary(
        run_id=run.info.run_id,
        name=run.info.run_name or run.info.run_id,
        status=run.info.status,
        overrides=overrides,
        params=dict(run.data.params),
        group_key=tags.get("group_key", run.info.run_id),
        final_test_acc=metrics.get("final_test_acc"),
        best_test_acc=metrics.get("best_test_acc"),
        final_train_loss=metrics.get("final_train_loss"),
        train_time_s=metrics.get("train_time_s"),
        test_acc=points,
        failure=tags.get("failure_reason", ""),
        unused=unused_keys(dict(run.data.params), overrides),
    )


def as_cell(summary: RunSummary, cell: list[str] | None) -> RunSummary:
    """A run reused by a sweep (the same config had finished before), labelled as the sweep's
    cell it stands in for: its own overrides may spell that config differently, e.g. with a
    default written out, and the report's rows and groups follow the sweep's own terms."""
    if cell is None:
        return summary
    overrides = parse_overrides(" ".join(cell))
    return dataclasses.replace(
        summary,
        name=run_name(cell),
        overrides=overrides,
        unused=unused_keys(summary.params, overrides),
    )


def swept_keys(runs: list[RunSummary]) -> list[str]:
    """Keys whose value differs between runs (seed is a repeat, not a compared key).

    First the keys the runs overrode, in their order. A key one run overrode and another left
    at its default differs too: the default's value is read from the run's logged params
    (`value_of`), e.g. optimizer=sgd against adam. Then what a preset (`experiment=...`) or a
    default set differently: the group choices (dataset=fashion_mnist against mnist), then any
    other logged value outside a group whose choice already differs, so runs of different
    datasets or schedules are never pooled or labelled as if they were alike.

    Only runs that have and used a key compare it: a phased schedule's `schedule.phases.0.epochs`
    is no difference from a run without phases, nor its unused `optimizer.lr` from another's.
    """
    order: list[str] = []

    def consider(key: str) -> None:
        if key not in order and _compared(key) and len(_values(runs, key)) > 1:
            order.append(key)

    for r in runs:
        for k in r.overrides:
            consider(k)
    for group in GROUPS:
        consider(group)
    chosen = [g for g in GROUPS if g in order]
    # Only values every run logged: a setting added in a later version is missing from older
    # runs (which a sweep may reuse), and that is not a difference between them.
    logged_by_all = set.intersection(*(set(r.params) for r in runs)) if runs else set()
    for k in sorted(logged_by_all):
        if k not in GROUPS and k.split(".")[0] not in chosen:
            consider(k)
    return order


def _values(runs: list[RunSummary], key: str) -> set[str]:
    """The values of key among the runs that have and used it."""
    return {v for v in (value_of(r, key) for r in runs) if v is not None}


def _compared(key: str) -> bool:
    """Not the seed (a repeat) nor a key, or a key under one, of NOT_COMPARED, nor a preset's
    own notes (`experiment.title`, ...): its name says which preset it is."""
    if key == "seed" or key.startswith("experiment."):
        return False
    return not any(key == n or key.startswith(f"{n}.") for n in NOT_COMPARED)


def value_of(run: RunSummary, key: str) -> str | None:
    """A run's value of a key: as its command line gave it, or as logged; None where the run
    has no such key or did not train with it (so it is neither labelled nor grouped by it).

    A group's logged choice wins over the command line's: with a phased schedule it names the
    optimizers that trained (`sgd then adam`), where `optimizer=sgd` only chose the settings
    the phases start from; so does what such a run logged as its `trainer.epochs` (the phases'
    total). Values are compared as values: `1e6` and `1000000.0` are one learning rate.
    """
    if key in SWITCH_KEYS:  # `off`, `false` and `False` are one setting
        raw = run.overrides.get(key, run.params.get(key))
        return None if raw is None else switch_word(raw)
    if key in GROUPS and key in run.params:
        return canonical(run.params[key])
    if key in run.unused:
        return canonical(run.params[key]) if key in LOGGED_AS_TRAINED else None
    if key in run.overrides:
        return canonical(run.overrides[key])
    if key == "experiment":  # the one optional group: a run without a preset has no such param
        return run.params.get(key, "none")
    return canonical(run.params[key]) if key in run.params else None


def canonical(value: str) -> str:
    """One spelling per value: numbers as parsed (`1e6`, `1000000.0` -> `1000000`; `0.010` ->
    `0.01`), booleans and null as YAML writes them (Hydra logs `True`, a command says `true`)."""
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered
    if value.strip() in ("null", "None", "~"):  # not `none`: that names a choice (augment=none)
        return "null"
    try:
        number = float(lowered)
    except ValueError:
        return value
    if not math.isfinite(number):
        return value
    return str(int(number)) if number.is_integer() and abs(number) < 1e16 else repr(number)


def check_keys(runs: list[RunSummary], by: list[str]) -> None:
    """Every --by key must name something the runs have: a typo must not draw an empty plot.

    The message suggests the nearest keys a user would group by and lists the few that differ;
    keys that only say where a run is logged or how it is shown would be noise there.
    """
    known = {k for r in runs for k in (*r.overrides, *r.params)}
    unknown = [k for k in by if k not in known]
    if not unknown:
        return
    key = unknown[0]
    valid = sorted(k for k in known if k not in INTERNAL and (k == "seed" or _compared(k)))
    close = difflib.get_close_matches(key, valid, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    swept = differing_keys(runs)
    shown = ", ".join(swept[:SHOWN_DIFFERING]) or "(none)"
    more = f" and {len(swept) - SHOWN_DIFFERING} more" if len(swept) > SHOWN_DIFFERING else ""
    raise UnknownKeyError(
        f"--by {key!r}: no compared run has a param or override of that name.{hint} "
        f"Keys that differ between these runs: {shown}{more}."
    )


def pooled_keys(runs: list[RunSummary], by: list[str]) -> list[str]:
    """The keys whose values are averaged together when the runs are grouped by `by`."""
    pooled = [k for k in swept_keys(runs) if k not in by]
    if "seed" not in by and len(_values(runs, "seed")) > 1:
        pooled.append("seed")
    return pooled


def _pooled_text(pooled: list[str]) -> str:
    return f"pooled over {', '.join(pooled)}" if pooled else "no other key varies"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _fmt_acc(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def _mean_std(values: list[float]) -> str:
    """Mean ± std in %; one value has no spread, so it is shown alone."""
    if not values:
        return ""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * statistics.stdev(values):.2f}"


def _label(run: RunSummary, keys: list[str]) -> str:
    """`key=value` for each key the run has and used: one it did not has no value to show."""
    values = ((k, value_of(run, k)) for k in keys)
    return " ".join(f"{k}={v}" for k, v in values if v is not None)


def _uses(run: RunSummary, keys: list[str]) -> bool:
    return all(value_of(run, k) is not None for k in keys)


def differing_keys(runs: list[RunSummary]) -> list[str]:
    """The keys that tell these runs apart: the swept ones, then the seed if it varies."""
    keys = swept_keys(runs)
    if len(_values(runs, "seed")) > 1:
        keys.append("seed")
    return keys


def common_overrides(runs: list[RunSummary]) -> list[str]:
    """`key=value` overrides every run has alike: said once above the table, not in each row.

    Alike as values, and used by every run: a phased run's unused `trainer.epochs=1` is not
    what it trained with, so it is not said to be set alike.
    """
    if not runs:
        return []
    differing = set(differing_keys(runs))
    first = runs[0]
    return [
        f"{k}={value_of(first, k)}"
        for k in first.overrides
        if k not in differing
        and value_of(first, k) is not None
        and all(value_of(r, k) == value_of(first, k) for r in runs)
    ]


def left_out_note(runs: list[RunSummary], keys: list[str], labels: list[str]) -> str:
    """Which rows' labels leave out a key, and why, so a missing `key=value` is not a puzzle."""
    unused, missing = [], []
    for r, label in zip(runs, labels, strict=True):
        absent = [k for k in keys if value_of(r, k) is None]
        if notused := [k for k in absent if k in r.unused]:
            unused.append(f"{', '.join(notused)} in `{label}`")
        if lacking := [k for k in absent if k not in r.unused]:
            missing.append(f"{', '.join(lacking)} in `{label}`")
    parts = []
    if unused:
        parts.append(
            "A row without a differing key's value did not train with that setting (its "
            f"schedule's phases set their own optimizer settings): {'; '.join(unused)}."
        )
    if missing:
        parts.append(f"Some runs do not have every differing key: {'; '.join(missing)}.")
    return " ".join(parts)


def row_labels(runs: list[RunSummary], keys: list[str]) -> list[str]:
    """Each run's label in the tables: the values of `keys` only, since the rest is the same in
    every row; a run's full name where those do not tell two different configs apart."""
    labels = [_label(r, keys) for r in runs]
    configs: dict[str, set[tuple[str, str | None]]] = defaultdict(set)
    for label, r in zip(labels, runs, strict=True):
        configs[label].add((r.group_key, value_of(r, "seed")))
    return [
        label if label and len(configs[label]) == 1 else r.name
        for label, r in zip(labels, runs, strict=True)
    ]


_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)")


def natural_key(text: str) -> tuple[tuple[int, float, str], ...]:
    """Order by the numbers in a label as numbers: seed=2 before seed=10, lr=0.01 before
    lr=0.1, where text order would put them the other way round."""
    return tuple(
        (0, float(part), "") if i % 2 else (1, 0.0, part)
        for i, part in enumerate(_NUMBER.split(text))
    )


def group_runs(runs: list[RunSummary], by: list[str] | None) -> list[tuple[str, list[RunSummary]]]:
    """(label, finished runs): per --by values, or per full config but the seed by default.

    A run that did not use a --by key (or has none) is in no group of it: it never trained
    with any of that key's values (`ungrouped` names it).
    """
    groups: dict[str, list[RunSummary]] = defaultdict(list)
    for r in runs:
        if r.status == "FINISHED" and r.final_test_acc is not None and (not by or _uses(r, by)):
            groups[_label(r, by) if by else r.group_key].append(r)
    if by:
        return list(groups.items())
    # A config is named by its swept keys; by its overrides where those do not tell it apart.
    keys = [k for k in differing_keys(runs) if k != "seed"]
    labels = {key: _label(members[0], keys) for key, members in groups.items()}
    if not all(labels.values()) or len(set(labels.values())) < len(labels):
        labels = {key: _config_text(members[0]) for key, members in groups.items()}
    return [(labels[key], members) for key, members in groups.items()]


def ungrouped(runs: list[RunSummary], by: list[str]) -> list[RunSummary]:
    """The finished runs that `group_runs` leaves out of the --by groups."""
    return [
        r
        for r in runs
        if r.status == "FINISHED" and r.final_test_acc is not None and not _uses(r, by)
    ]


def _ungrouped_note(runs: list[RunSummary], by: list[str]) -> list[str]:
    """Says which finished runs no --by group holds, named by their rows' labels."""
    left = {r.run_id for r in ungrouped(runs, by)}
    if not left:
        return []
    labels = row_labels(runs, differing_keys(runs))
    named = [f"`{label}`" for r, label in zip(runs, labels, strict=True) if r.run_id in left]
    return [
        "",
        f"Not in these groups ({_count(len(left), 'run')}): {'; '.join(named)}. Each did not "
        f"train with {' or '.join(by)} (a phased schedule's phases set their own optimizer "
        "settings) or has no such key, so it belongs to none of its values.",
    ]


def _config_text(run: RunSummary) -> str:
    return " ".join(f"{k}={v}" for k, v in run.overrides.items() if k != "seed") or "defaults"


def _groups_md(runs: list[RunSummary], by: list[str] | None) -> list[str]:
    """The groups table; n counts a group's reused runs (marked as in the runs table), whose
    numbers are in its mean though this sweep did not train them."""
    groups = group_runs(runs, by)
    if not groups:
        return []
    if by:
        title = f"## Groups by {', '.join(by)} (mean ± std, {_pooled_text(pooled_keys(runs, by))})"
    else:
        title = "## Groups (mean ± std over seeds)"
    md = ["", title, "", "| group | n | final test acc | best test acc |", "|---|---:|---|---|"]
    for label, members in groups:
        final = [m.final_test_acc for m in members if m.final_test_acc is not None]
        best = [m.best_test_acc for m in members if m.best_test_acc is not None]
        reused = sum(m.reused is not None for m in members)
        n = f"{len(members)} ({reused} {REUSED_MARK})" if reused else str(len(members))
        md.append(f"| {label} | {n} | {_mean_std(final)} | {_mean_std(best)} |")
    return md + (_ungrouped_note(runs, by) if by else [])


# The loss a training loop prints, not the trained model's: a rerun with another log_every
# trains the same weights and shows another number.
TRAIN_LOSS_NOTE = (
    "final_train_loss is the mean training loss over each run's last log interval "
    "(trainer.log_every mini-batches, or fewer at an epoch's end), so it moves with that interval."
)


def write_report(
    runs: list[RunSummary], out_dir: Path, by: list[str] | None = None, title: str = "Comparison"
) -> list[Path]:
    """comparison.md, comparison.csv and the figures.

    Without `by`, runs are grouped per config (over seeds) and there is one figure per swept
    key; with `by`, the groups and the one figure are per value of those keys, pooling the rest.
    """
    if by:
        check_keys(runs, by)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("comparison_*.png"):  # an earlier report's, e.g. another --by
        stale.unlink(missing_ok=True)
    header = [
        "run",
        "run_id",
        "status",
        "final_test_acc",
        "best_test_acc",
        "final_train_loss",
        *(f"batches_to_{int(100 * t)}" for t in THRESHOLDS),
        "train_time_s",
        "reused_from",
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
                "" if r.reused is None else r.reused.parent_id or "none",
            ]
        )
    csv_path = out_dir / "comparison.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)

    md = [f"# {title}", "", f"{_count(len(runs), 'run')}; accuracies in %."]
    common = common_overrides(runs)
    if common and len(runs) > 1:
        md.append(f"Set alike in every run: `{' '.join(common)}`.")
    md.append("")
    # The table says where a reused run came from by a mark and a note, not a column.
    shown = header[:-1]
    md.append("| " + " | ".join(shown) + " |")
    md.append("|" + "---|" * len(shown))
    keys = differing_keys(runs)
    labels = row_labels(runs, keys)
    md.extend(
        "| " + " | ".join([_marked(label, r), *row[1 : len(shown)]]) + " |"
        for label, r, row in zip(labels, runs, rows, strict=True)
    )
    md += ["", TRAIN_LOSS_NOTE]
    if note := reused_note(runs, labels):
        md += ["", note]
    if note := left_out_note(runs, keys, labels):
        md += ["", note]
    unfinished = [
        (label, r) for label, r in zip(labels, runs, strict=True) if r.status != "FINISHED"
    ]
    failed = [(label, r) for label, r in unfinished if r.status not in STILL_RUNNING]
    running = [label for label, r in unfinished if r.status in STILL_RUNNING]
    if failed:
        md += [
            "",
            f"**{len(failed)} run(s) did not finish:** "
            + ", ".join(f"{label} ({r.status})" for label, r in failed),
        ]
    if running:
        md += [
            "",
            f"**{len(running)} run(s) have not finished yet** (RUNNING: still training, or their "
            "process ended without saying so), so they have no final numbers: "
            + ", ".join(running),
        ]
    md += _groups_md(runs, by)
    paths = [csv_path]
    curves = any(_plotted(r) for r in runs)
    if not any(r.test_acc for r in runs):  # shapes-only runs train nothing: no figure
        md += ["", "No run logged test accuracy (none trained), so there are no figures."]
    elif not curves:
        md += ["", "No run that logged test accuracy finished, so there are no figures."]
    elif not by and not swept_keys(runs):
        md += ["", _no_key_figures(runs)]
    for keys in ([by] if by else [[k] for k in swept_keys(runs)]) if curves else []:
        png = out_dir / f"comparison_{'_'.join(keys).replace('/', '_')}.png"
        pooled = pooled_keys(runs, keys)
        plot_groups(runs, keys, png, pooled)
        paths.append(png)
        name = ", ".join(keys)
        md += [
            "",
            f"## By {name}",
            "",
            f"![test accuracy by {name}]({png.name})",
            "",
            f"One line per value of {name}: the mean over its finished runs "
            f"({_pooled_text(pooled)}); the band is ± 1 std over those runs where a line has "
            "more than one.",
        ]
    md_path = out_dir / "comparison.md"
    md_path.write_text("\n".join(md) + "\n")
    return [md_path, *paths]


def _marked(label: str, run: RunSummary) -> str:
    return f"{label} {REUSED_MARK}" if run.reused is not None else label


def reused_note(runs: list[RunSummary], labels: list[str]) -> str:
    """The note under the table for its marked rows: which runs this sweep did not train, and
    where each was trained, so no one reads their numbers as this sweep's measurements."""
    by_origin: dict[Origin, list[str]] = defaultdict(list)
    for r, label in zip(runs, labels, strict=True):
        if r.reused is not None:
            by_origin[r.reused].append(f"`{label}`")
    if not by_origin:
        return ""
    where = "; ".join(
        f"{', '.join(named)} from {origin.said()}" for origin, named in by_origin.items()
    )
    count = _count(sum(len(named) for named in by_origin.values()), "run")
    return (
        f"{REUSED_MARK} Reused, not trained in this sweep ({count}): a run of the same config "
        f"had finished before, so its job was skipped and that run stands in for it: {where}. "
        "`tracking.skip_finished=false` trains such jobs again."
    )


def _no_key_figures(runs: list[RunSummary]) -> str:
    """Why a report of trained runs has no figure: there is one per swept key, and none is."""
    if len(_values(runs, "seed")) > 1:
        return (
            "Only the seed differs between these runs, so there is no figure per swept key; "
            "`cvsweep compare` with `--by seed` draws one line per seed."
        )
    return (
        "No key differs between these runs, so there is no figure per swept key; each run's "
        "own curves are its curves.png artifact (and in its job folder)."
    )


def _plotted(run: RunSummary) -> bool:
    """Whether a run's curve is in the figures: as in the groups, only finished runs count.
    A failed, killed or running run's curve stops early, so the mean would change which runs
    it is over part-way along its line, under an n that counts runs with no final result."""
    return run.status == "FINISHED" and bool(run.test_acc)


def plot_by_key(runs: list[RunSummary], key: str, path: Path) -> Path:
    """Test accuracy vs mini-batches, one line per value of key, mean over the other runs."""
    return plot_groups(runs, [key], path, pooled_keys(runs, [key]))


def plot_groups(runs: list[RunSummary], keys: list[str], path: Path, pooled: list[str]) -> Path:
    """Test accuracy vs mini-batches, one line per value of keys: mean ± std of the pooled runs."""
    from .plots import plt

    by_value: dict[str, list[RunSummary]] = defaultdict(list)
    for r in runs:
        if _plotted(r) and _uses(r, keys):
            by_value[_label(r, keys)].append(r)
    # A fixed layout: a layout engine draws the figure twice (0.2 s of a sweep's end here).
    fig, ax = plt.subplots(figsize=(7, 4.5))
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.11, top=0.87)
    lowest = math.inf
    for value, members in sorted(by_value.items(), key=lambda item: natural_key(item[0])):
        steps = sorted({s for m in members for s, _ in m.test_acc})
        curves = [dict(m.test_acc) for m in members]
        mean, lo, hi = [], [], []
        for s in steps:
            vals = [100 * c[s] for c in curves if s in c]
            mu = statistics.fmean(vals)
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            mean.append(mu)
            lo.append(max(mu - sd, 0.0))  # accuracy stays within 0-100 %, its band too
            hi.append(min(mu + sd, 100.0))
        lowest = min([lowest, *(v for v in lo if math.isfinite(v))])
        (line,) = ax.plot(steps, mean, label=f"{value} (n={len(members)})")
        if len(members) > 1:
            ax.fill_between(steps, lo, hi, alpha=0.2, color=line.get_color())
    ax.set_xlabel("mini-batch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"test accuracy by {', '.join(keys)}\nmean ± std, {_pooled_text(pooled)}")
    ax.grid(alpha=0.3)
    if by_value:
        ax.legend()
        if math.isfinite(lowest):
            ax.set_ylim(max(0.0, lowest - 2), 100.5)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sweep_children(client: Any, parent: Any) -> list[Any]:
    """Runs tagged as children of parent (a run object): the jobs this launch started."""
    return search_all_runs(
        client,
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )


def reused_origins(client: Any, parent: Any, runs: list[Any]) -> dict[str, Origin]:
    """The runs of a sweep (its parent: a run object) that it reused, by id, each with where
    it was trained: finished runs not tagged as its children that ended before it began.

    Read from the store alone, so the sweep's own report and `cvsweep compare <parent>` mark
    the same rows. A run the sweep resumed is not one: it ended in this sweep, trained by it.
    """
    began = parent.info.start_time or 0
    names: dict[str, str] = {}
    found: dict[str, Origin] = {}
    for run in runs:
        earlier = run.data.tags.get("mlflow.parentRunId", "")
        ended = run.info.end_time
        if earlier == parent.info.run_id or run.info.status != "FINISHED" or not ended:
            continue
        if ended > began:
            continue
        if earlier and earlier not in names:
            names[earlier] = _run_name(client, earlier)
        found[run.info.run_id] = Origin(earlier, names.get(earlier, ""))
    return found


def _run_name(client: Any, run_id: str) -> str:
    """A run's name, "" where the store no longer has the run."""
    from mlflow.exceptions import MlflowException

    try:
        run = with_retry(lambda: client.get_run(run_id))
    except MlflowException:
        return ""
    return run.info.run_name or run_id


def with_origins(runs: list[RunSummary], origins: dict[str, Origin]) -> list[RunSummary]:
    """The runs, those a sweep reused marked with where they were trained."""
    return [dataclasses.replace(r, reused=origins.get(r.run_id)) for r in runs]


def record_sweep_runs(
    client: Any, parent: str, sweep_dir: Path, run_ids: list[str], cells: dict[str, list[str]]
) -> None:
    """Log the sweep's run ids on its parent as sweep_runs.json, with the sweep cell each
    reused run stands in for.

    Reused and resumed runs keep their first parent's tag, so this list is how
    `cvsweep compare <parent>` finds every run of a relaunched sweep, and labels the reused
    ones as the sweep's own report did.
    """
    path = sweep_dir / SWEEP_RUNS
    recorded = {"parent_run_id": parent, "run_ids": run_ids, "cells": cells}
    path.write_text(json.dumps(recorded, indent=1) + "\n")
    with_retry(lambda: client.log_artifact(parent, str(path)))


def sweep_report(client: Any, parent: str, sweep_dir: Path, results: list[dict[str, Any]]) -> str:
    """The sweep's report from its runs in the store, logged to the parent, which it closes.

    `results` are the jobs' `job_result.json` contents: a job skipped because an identical run
    had finished is not a child of this parent, but its run belongs in the report all the same.
    Returns the markdown, for the console.
    """
    parent_run = with_retry(lambda: client.get_run(parent))
    members = {r.info.run_id: r for r in sweep_children(client, parent_run)}
    children = set(members)
    cells: dict[str, list[str]] = {}  # a reused run's id -> the sweep cell it stands in for
    for r in results:
        rid = r.get("run_id")
        if rid and rid not in members and rid != parent:
            members[rid] = with_retry(lambda rid=rid: client.get_run(rid))
        if rid and rid not in children and r.get("cell") is not None:
            cells.setdefault(rid, r["cell"])
    record_sweep_runs(client, parent, sweep_dir, list(members), cells)
    no_run = [r for r in results if not r.get("run_id")]
    origins = reused_origins(client, parent_run, list(members.values()))
    summaries = [as_cell(summarize(client, r), cells.get(r.info.run_id)) for r in members.values()]
    runs = sorted(
        [
            *with_origins(summaries, origins),
            *(_without_run(r, i) for i, r in enumerate(no_run)),
        ],
        key=lambda r: natural_key(r.name),
    )
    paths = write_report(runs, sweep_dir, title=parent_run.info.run_name)
    for path in paths:
        with_retry(lambda p=path: client.log_artifact(parent, str(p)))
    bad = [r for r in runs if r.status != "FINISHED"]
    if no_run:
        first = str(no_run[0].get("error") or "no reason recorded")
        reason = f"{len(no_run)} job(s) failed before their runs were created: {first}"
        with_retry(lambda: client.set_tag(parent, "failure_reason", reason[:500]))
    elif bad:  # the UI shows the parent FAILED: its reason names the jobs that made it so
        labels = row_labels(runs, differing_keys(runs))
        reason = f"{len(bad)} of {len(runs)} runs did not finish: " + "; ".join(
            f"{label} ({r.status}{': ' + r.failure if r.failure else ''})"
            for label, r in zip(labels, runs, strict=True)
            if r.status != "FINISHED"
        )
        with_retry(lambda: client.set_tag(parent, "failure_reason", _shortened(reason, 500)))
    with_retry(lambda: client.set_terminated(parent, "FAILED" if bad else "FINISHED"))
    return (sweep_dir / "comparison.md").read_text()


def _without_run(result: dict[str, Any], i: int) -> RunSummary:
    """A row for a job that failed before it had a run (bad data, say): from its
    job_result.json, so the report names it and why instead of leaving it out."""
    cell = list(result.get("cell") or [])
    error = str(result.get("error") or "").strip().splitlines()
    return RunSummary(
        run_id="",
        name=run_name(cell),
        status=str(result.get("status") or "FAILED"),
        overrides=parse_overrides(" ".join(cell)),
        params={},
        group_key=f"no-run-{i}",
        final_test_acc=None,
        best_test_acc=None,
        final_train_loss=None,
        train_time_s=None,
        failure=(_shortened(error[0]) if error else "no run was created"),
    )


def _shortened(text: str, limit: int = 200) -> str:
    """A table cell's share of a long error: cut at a word and marked as cut, so that the
    end of what is shown is not read as a command or path (the job's train.log has it all)."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"
