"""`cvsweep compare`: the sweep comparison report for any runs in the store.

Sweeps launched separately (or runs from different days) can be compared this way: the report
is rebuilt from MLflow alone, exactly as the sweep callback builds it.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compare import (
    STILL_RUNNING,
    SWEEP_RUNS,
    UnknownKeyError,
    as_cell,
    natural_key,
    pooled_keys,
    reused_origins,
    summarize,
    sweep_children,
    with_origins,
    write_report,
)
from .identity import read_job_result
from .job_folder import tracked_in
from .model_source import RUN_ID
from .outputs import OutputPathError, check_folder
from .rerun import deleted_note
from .signals import HeldSignals
from .store_errors import EXIT_USER_ERROR, open_client, store_command
from .tracking import restore_command, search_all_runs, with_retry


class CompareError(ValueError):
    """A target that names no runs."""


def is_sweep(run: Any) -> bool:
    return run.data.tags.get("cvsweep.sweep") == "true"


def _recorded(client: Any, parent_id: str) -> Any:
    """The sweep_runs.json a sweep's report logged on its parent (None where it made none), or
    the exception that reading it raised."""
    names = {f.path for f in with_retry(lambda: client.list_artifacts(parent_id))}
    if SWEEP_RUNS not in names:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        local = with_retry(lambda: client.download_artifacts(parent_id, SWEEP_RUNS, tmp))
        try:
            return json.loads(Path(local).read_text())
        except (ValueError, OSError) as exc:
            return exc


def recorded_cells(data: Any) -> dict[str, list[str]]:
    """The sweep cell each reused run stood in for, as the sweep's report labelled it, from
    what `_recorded` read ({} for a sweep that recorded none: reports made before cells were
    recorded)."""
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, dict):
        return {}
    return {rid: [str(o) for o in cell] for rid, cell in cells.items() if isinstance(cell, list)}


def recorded_run_ids(data: Any, parent_id: str) -> list[str]:
    """The run ids a sweep's report logged on its parent, from what `_recorded` read ([] for a
    sweep that made none)."""
    if data is None:
        return []
    ids = data.get("run_ids") if isinstance(data, dict) else data
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        # The child runs' tags still name the sweep's runs; only reused ones go missing.
        why = f" ({type(data).__name__}: {data})" if isinstance(data, Exception) else ""
        print(
            f"warning: {SWEEP_RUNS} of sweep {parent_id} is damaged{why}; comparing the runs "
            "tagged as its children only (runs it reused from earlier sweeps are left out)",
            file=sys.stderr,
        )
        return []
    return ids


def run_members(client: Any, run: Any, recorded: Any) -> list[Any]:
    """A parent's runs: the ones its sweep recorded (`recorded`: its sweep_runs.json as
    `_recorded` read it), then its tagged children; never itself."""
    from mlflow.exceptions import MlflowException

    parent_id = run.info.run_id
    members = {r.info.run_id: r for r in sweep_children(client, run)}
    for rid in recorded_run_ids(recorded, parent_id) if is_sweep(run) else []:
        if rid in members or rid == parent_id:
            continue
        try:
            member = with_retry(lambda r=rid: client.get_run(r))
        except MlflowException:
            print(
                f"warning: run {rid} of sweep {parent_id} is no longer in the store",
                file=sys.stderr,
            )
            continue
        if member.info.lifecycle_stage == "deleted":
            print(f"note: run {rid} of sweep {parent_id} is deleted: left out", file=sys.stderr)
            continue
        members[rid] = member
    return list(members.values())


def _get_run(client: Any, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return with_retry(lambda: client.get_run(run_id))
    except MlflowException:
        raise CompareError(f"Run {run_id} does not exist in this store.") from None


@dataclass(frozen=True)
class Found:
    """What a target names: its runs and the report's title; for one sweep named alone, also
    its parent run and its sweep_runs.json (read once, for the members, the cells and the
    reused runs alike)."""

    runs: list[Any]
    title: str
    sweep: Any = None
    recorded: Any = None


def runs_by_id(client: Any, ids: list[str]) -> Found:
    """The runs named, each parent (a sweep, or a run with children) stood in for by its runs."""
    found: dict[str, Any] = {}
    title = ""
    sweep = recorded = None
    ids = list(dict.fromkeys(ids))  # a run named twice is one run
    for run_id in ids:
        run = _get_run(client, run_id)
        deleted = deleted_note(run)
        if deleted:  # named by id: compared, but not as if it were not in the trash
            print(f"note: {deleted}", file=sys.stderr)
        recorded = _recorded(client, run.info.run_id) if is_sweep(run) else None
        members = run_members(client, run, recorded)
        if is_sweep(run) and not members:
            raise CompareError(_no_sweep_runs(client, run))
        for member in members or [run]:
            found.setdefault(member.info.run_id, member)
        if len(ids) == 1 and is_sweep(run):
            sweep = run
        if len(ids) == 1 and members:
            title = run.info.run_name or run_id
            if is_sweep(run) and run.info.status in STILL_RUNNING:
                print(
                    f"note: the sweep {run.info.run_name!r} is still running: this report has "
                    f"the {len(members)} run(s) it has made so far",
                    file=sys.stderr,
                )
            elif is_sweep(run) and run.info.status == "KILLED":
                print(f"note: {_stopped_sweep(run, members)}", file=sys.stderr)
        elif len(ids) == 1:
            _say_sweep_of(client, run)
    title = title or f"Comparison of {len(found)} run{'' if len(found) == 1 else 's'}"
    return Found(list(found.values()), title, sweep, recorded if sweep else None)


def _stopped_sweep(parent: Any, members: list[Any]) -> str:
    """A stopped sweep's report lists the runs it made, some perhaps finished since by a later
    launch of the same command: said, so that it is not read as the sweep's whole result."""
    reason = parent.data.tags.get("failure_reason") or "stopped"
    ended = parent.info.end_time or 0
    later = [m for m in members if m.info.status == "FINISHED" and (m.info.end_time or 0) > ended]
    head = (
        f"the sweep {parent.info.run_name!r} was stopped ({reason}) before all its jobs had "
        f"finished: this report has the {len(members)} run(s) it made"
    )
    if later:
        return (
            f"{head}, {len(later)} of which finished after it stopped, resumed by a later launch "
            "(shown as finished here); the later launch's sweep has the whole result."
        )
    command = parent.data.tags.get("command")
    again = f"`{command}`" if command else "The same command"
    return f"{head}. {again} run again resumes the stopped job and runs the rest."


def _say_sweep_of(client: Any, run: Any) -> None:
    """A note for one job of a sweep named alone: its id is easily taken for the sweep's."""
    from mlflow.exceptions import MlflowException

    parent_id = run.data.tags.get("mlflow.parentRunId")
    if not parent_id:
        return
    try:
        parent = with_retry(lambda: client.get_run(parent_id))
    except MlflowException:
        return
    if is_sweep(parent):
        print(
            f"note: run {run.info.run_id} is one job of the sweep {parent.info.run_name!r}; "
            f"`cvsweep compare {parent_id}` compares all of that sweep's runs",
            file=sys.stderr,
        )


def _no_sweep_runs(client: Any, run: Any) -> str:
    """Why a sweep's parent has no runs to compare: a sweep still starting, or one whose jobs
    all failed or were stopped before they made runs, is not a store that lost them."""
    head = f"Run {run.info.run_id} is the parent of the sweep {run.info.run_name!r}"
    reason = run.data.tags.get("failure_reason", "").rstrip(".")
    if "before their runs were created" in reason:
        return (
            f"{head}, whose jobs made no runs to compare: {reason}. Its report "
            "(comparison.md, logged on it and in its sweep folder) names each job and why; "
            "fix that and run the sweep again."
        )
    recorded = {f.path for f in with_retry(lambda: client.list_artifacts(run.info.run_id))}
    if SWEEP_RUNS not in recorded and run.info.status == "RUNNING":
        return (
            f"{head}, which has no runs yet: it is still running (or its process ended before "
            "its first job began and no later launch has marked it). Compare it again once its "
            "jobs have started."
        )
    if SWEEP_RUNS not in recorded and run.info.status in ("KILLED", "FAILED"):
        why = f" ({reason})" if reason else ""
        return (
            f"{head}, which ended {run.info.status}{why} before any of its jobs made a run: "
            "there is nothing to compare. Run its command again (its `command` tag) to train "
            "its jobs."
        )
    return (
        f"{head}, and none of its runs are in this store: none is tagged as its child, and its "
        f"{SWEEP_RUNS} (the list a sweep records when its report is made) is missing, damaged "
        "or names only runs that are gone. Compare its runs by id, or the whole experiment: "
        "cvsweep compare <experiment name>."
    )


def _parts(target: str) -> list[str]:
    return [t.strip() for t in target.split(",") if t.strip()]


def named_ids(target: str) -> list[str]:
    """The run ids a target names, lower case as MLflow's are; [] for an experiment name."""
    ids = [i.lower() for i in _parts(target)]
    return ids if ids and all(RUN_ID.match(i) for i in ids) else []


def find_runs(client: Any, target: str) -> Found:
    """The runs and title for a parent run id, comma-separated run ids, or an experiment."""
    named = named_ids(target)
    if named:
        return runs_by_id(client, named)
    exp = with_retry(lambda: client.get_experiment_by_name(target))
    if exp is None:
        raise CompareError(_not_found(target, _parts(target)))
    if exp.lifecycle_stage == "deleted":
        restore = restore_command(str(client.tracking_uri), exp.experiment_id)
        raise CompareError(
            f"Experiment {target!r} is deleted (in the MLflow UI or with `mlflow experiments "
            "delete`); its runs are kept until the store is cleaned. Restore it in the MLflow UI "
            f"(or `{restore}`) to compare them."
        )
    runs = search_all_runs(client, [exp.experiment_id])
    runs = [r for r in runs if not is_sweep(r)]
    untrained = [r for r in runs if r.data.params.get("trainer.shapes_only") == "True"]
    if untrained and len(untrained) < len(runs):
        # They printed a shape report and trained nothing: no numbers to compare, and their
        # one differing setting would pass for a swept key.
        runs = [r for r in runs if r not in untrained]
        print(
            f"note: {len(untrained)} run(s) with trainer.shapes_only=true trained nothing and "
            "are left out; name them by id to see them",
            file=sys.stderr,
        )
    if not runs:
        raise CompareError(f"Experiment {target!r} has no runs yet.")
    kept = latest_per_config(runs)
    kept_ids = {r.info.run_id for r in kept}
    left = [r for r in runs if r.info.run_id not in kept_ids]
    repeats = sum(1 for r in left if r.info.status == "FINISHED")
    if repeats:
        print(
            f"note: {repeats} finished run(s) repeat a config already finished "
            "(`cvsweep rerun`, or tracking.skip_finished=false): each config counts once, its "
            "latest run; name runs by id to compare repeats",
            file=sys.stderr,
        )
    superseded = len(left) - repeats
    if superseded:
        print(
            f"note: {superseded} failed or killed run(s) are left out: their config has a "
            "finished run, which stands for it (as in `cvsweep report`); name runs by id to "
            "see them",
            file=sys.stderr,
        )
    return Found(kept, f"Experiment {target}")


def _not_found(target: str, ids: list[str]) -> str:
    """The message for a target that names nothing, pointing at the part that is not an id."""
    bad = [i for i in ids if not RUN_ID.match(i.lower())]
    if len(ids) > 1 and len(bad) < len(ids):
        return (
            f"{bad[0]!r} in {target!r} is not a run id (32 hex digits), and the whole is no "
            "experiment name in this store: give run ids only, separated by commas."
        )
    if len(ids) == 1 and re.fullmatch(r"[0-9a-fA-F]{6,31}", target):
        return (
            f"{target!r} is not a whole run id (32 hex digits; it has {len(target)}) nor an "
            "experiment name in this store: copy the full id, e.g. from the run's page in the "
            "MLflow UI or the `mlflow run:` line a run prints."
        )
    folder = Path(target).expanduser()
    if folder.is_dir():
        return _folder_not_a_sweep(target, folder)
    return (
        f"{target!r} is neither a run id (32 hex digits), a comma-separated list of run ids, "
        "a sweep's folder, nor an experiment name in this store."
    )


def _folder_not_a_sweep(target: str, folder: Path) -> str:
    """A folder that is not a sweep's: one job's folder names its run; a folder of sweeps (a
    sweep's date folder) names them."""
    rid = str((read_job_result(folder) or {}).get("run_id") or "")
    if RUN_ID.match(rid):
        return (
            f"{target} is one job's folder, of run {rid}: compare takes a sweep's folder, run "
            f"ids or an experiment. `cvsweep compare {rid}` shows that run; `cvsweep evaluate "
            f"{target}` measures its model again."
        )
    sweeps = sorted(p for p in folder.iterdir() if (p / SWEEP_RUNS).is_file())
    if sweeps:
        return (
            f"{target} holds {len(sweeps)} sweep folder(s), not one sweep: compare one of them, "
            f"e.g. `cvsweep compare {sweeps[-1]}` (the latest)."
        )
    return (
        f"{target} is a folder, but neither a sweep's folder (it has no {SWEEP_RUNS}) nor one "
        "job's: compare takes a sweep's folder, run ids or an experiment name."
    )


def latest_per_config(runs: list[Any]) -> list[Any]:
    """Each config's latest finished run, and every unfinished run of a config not finished.

    A config run again (a rerun, a repeat with skip_finished=false) measures the same thing
    with the same seed: counting it again would pass it off as another seed in the groups. A
    failed or killed attempt at a config that did finish (a new run after a kill that left no
    checkpoint, a rerun cut short) is no result that is missing, so it is not listed as one.
    """
    latest: dict[str, str] = {}  # config hash -> run id
    for run in sorted(runs, key=lambda r: r.info.end_time or 0):
        chash = run.data.tags.get("config_hash")
        if run.info.status == "FINISHED" and chash:
            latest[chash] = run.info.run_id
    return [r for r in runs if _counts(r, latest)]


def _counts(run: Any, latest: dict[str, str]) -> bool:
    """Whether a run stands for its config: `latest` maps each finished config to its run."""
    chash = run.data.tags.get("config_hash")
    if not chash or chash not in latest:
        return True
    if run.info.status == "FINISHED":
        return latest[chash] == run.info.run_id
    return run.info.status not in ("FAILED", "KILLED")  # one still running is shown as such


def is_sweep_folder(folder: Path) -> bool:
    """A sweep's folder holds the run list its report wrote, or Hydra's multirun.yaml (a sweep
    with tracking off, or one stopped before its report)."""
    return any((folder / name).is_file() for name in (SWEEP_RUNS, "multirun.yaml"))


def sweep_folder_parent(target: str) -> str:
    """A sweep's folder (`multirun/<date>/<time>`) stands for its parent run, which its
    sweep_runs.json names: the folder is what a user has at hand after a sweep, as for
    `evaluate`. Any other target is returned as it is."""
    folder = Path(target).expanduser()
    if not is_sweep_folder(folder):
        return target  # not a sweep's folder: a run id or an experiment (which a folder may share)
    try:
        recorded = json.loads((folder / SWEEP_RUNS).read_text())
    except (OSError, ValueError):
        recorded = None
    parent = recorded.get("parent_run_id") if isinstance(recorded, dict) else None
    if isinstance(parent, str) and RUN_ID.match(parent):
        return parent
    raise CompareError(
        f"{target} is a sweep's folder without a readable {SWEEP_RUNS}, the file naming the "
        "sweep's parent run that a tracked sweep writes with its report (with tracking off "
        "there is none, and nothing to compare). Compare a tracked sweep by its folder or its "
        "parent run id (the `sweep parent run:` line), runs by their ids, or an experiment by "
        "its name."
    )


def sweep_folder_store(target: str) -> str | None:
    """The store a sweep folder's jobs logged to, which each job's config names (a sweep gives
    its jobs the store's absolute URI): the folder is compared from anywhere, as `evaluate`
    takes a job folder. None for any other target, or a folder whose jobs name none."""
    folder = Path(target).expanduser()
    if not is_sweep_folder(folder):
        return None
    for job in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        uri = tracked_in(job) if (job / ".hydra").is_dir() else None
        if uri:
            return uri
    return None


def out_folder(args: argparse.Namespace) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.target)[:40]
    out = check_folder(Path(args.out or f"comparison-{safe}"))
    keep_sweep_report(out, args, f"comparison-{safe}")
    return out


REPORT_MD, REPORT_CSV = "comparison.md", "comparison.csv"


@dataclass(frozen=True)
class SweepReport:
    """A sweep's own report found in a folder: its parent run ("" where not recorded there),
    its title, and how many of its rows are jobs that failed before they made a run."""

    parent_id: str
    title: str
    runless_rows: int


def sweep_report_in(folder: Path) -> SweepReport | None:
    """The sweep report a sweep wrote in its folder (beside its run list or Hydra's
    multirun.yaml); None where folder holds none, e.g. an earlier `compare`'s own report."""
    md = folder / REPORT_MD
    if not md.is_file() or not is_sweep_folder(folder):
        return None
    try:
        recorded = json.loads((folder / SWEEP_RUNS).read_text())
    except (OSError, ValueError):
        recorded = {}
    parent = recorded.get("parent_run_id") if isinstance(recorded, dict) else None
    try:
        title = md.read_text().splitlines()[0].removeprefix("# ").strip()
    except (OSError, IndexError, UnicodeDecodeError):
        title = ""
    return SweepReport(str(parent or ""), title, _runless_rows(folder / REPORT_CSV))


def _runless_rows(path: Path) -> int:
    """Rows of a report's CSV without a run id: jobs that failed before they made a run, which
    only the sweep's own report has (`compare` rebuilds a report from the store's runs)."""
    try:
        with path.open(newline="") as fh:
            return sum(1 for row in csv.DictReader(fh) if not row.get("run_id"))
    except (OSError, csv.Error, UnicodeDecodeError):
        return 0


def single_id(target: str) -> str | None:
    """The one run id a target names (as find_runs reads it); None for anything else."""
    ids = set(named_ids(target))
    return ids.pop() if len(ids) == 1 else None


def keep_sweep_report(out: Path, args: argparse.Namespace, free_name: str) -> None:
    """Refuse an --out that holds a sweep's own report which this comparison would replace.

    A sweep's report and figures in its folder are what a user opens; MLflow keeps a copy, but
    the local files would be gone. The one report that may replace them is the same sweep's,
    rebuilt whole: compared by its parent id, without --by, and with no row that the store
    cannot give back.
    """
    found = sweep_report_in(out)
    if found is None:
        return
    by = [k.strip() for k in (args.by or "").split(",") if k.strip()]
    own = bool(found.parent_id) and single_id(args.target) == found.parent_id
    if own and not by and not found.runless_rows:
        return
    if not own:
        instead = f"the comparison of {args.target}"
    elif by:
        instead = f"this comparison by {', '.join(by)} (its figures per swept key removed)"
    else:
        instead = f"a report rebuilt from the store, without {_runless(found.runless_rows)}"
    free = out / free_name
    while sweep_report_in(free) is not None:
        free = free.with_name(free.name + "-new")
    which = f" {found.title!r}" if found.title else ""
    parent = f" (parent run {found.parent_id})" if found.parent_id else ""
    raise OutputPathError(
        f"--out {out} holds the report of the sweep{which}{parent}: its {REPORT_MD}, "
        f"{REPORT_CSV} and figures would be replaced by {instead}, and the sweep's own files would "
        "be gone from that folder (only the copies logged on its parent run in MLflow would "
        f"remain). Write this comparison to a folder of its own, e.g. --out {free}."
    )


def _runless(n: int) -> str:
    if n == 1:
        return "the row of its job that failed before it made a run"
    return f"the {n} rows of its jobs that failed before they made a run"


def by_keys(args: argparse.Namespace) -> list[str] | None:
    by = [k.strip() for k in args.by.split(",") if k.strip()] if args.by is not None else None
    if by == []:
        raise CompareError("--by needs at least one key, e.g. --by optimizer,augment.")
    return by


def build_report(client: Any, target: str, out: Path, by: list[str] | None) -> Path:
    """Write the report folder; returns comparison.md."""
    found = find_runs(client, target)
    # One sweep compared alone: its reused runs are labelled and marked as its own report did.
    # Among runs of several targets, none is this report's sweep's to reuse.
    cells = recorded_cells(found.recorded)
    summaries = sorted(
        (as_cell(summarize(client, r), cells.get(r.info.run_id)) for r in found.runs),
        key=lambda s: natural_key(s.name),
    )
    if found.sweep is not None:
        summaries = with_origins(summaries, reused_origins(client, found.sweep, found.runs))
    md = write_report(summaries, out, by=by or None, title=found.title)[0]
    if by and "dataset" in pooled_keys(summaries, by):
        # Accuracies on MNIST and on Fashion-MNIST are not repeats of one measurement.
        print(
            f"note: these runs are of different datasets, and --by {','.join(by)} averages "
            f"them together; --by {','.join(['dataset', *by])} keeps them apart",
            file=sys.stderr,
        )
    return md


def compare_main(args: argparse.Namespace) -> int:
    """Exit 0 with the report printed, 2 for a store, target or key the user must fix."""

    try:  # what can be checked without the store, before it is read
        if not args.target.strip():
            raise CompareError(
                "compare was given an empty target: give a sweep's folder, its parent run id, "
                "run ids (comma-separated) or an experiment name."
            )
        if args.tracking_uri is None:
            args.tracking_uri = sweep_folder_store(args.target)
        args.target = sweep_folder_parent(args.target)
        out, by = out_folder(args), by_keys(args)
    except (CompareError, OutputPathError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR

    def work(client: Any, _uri: str) -> int:
        md = build_report(client, args.target, out, by)
        with HeldSignals():  # the report is complete: a Ctrl-C while it is shown undoes nothing
            print(md.read_text())
            print(f"report: {md}", flush=True)
        return 0

    return store_command(
        lambda: open_client(args.tracking_uri), work, (CompareError, UnknownKeyError)
    )
