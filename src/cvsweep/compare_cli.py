"""`cvsweep compare`: the sweep comparison report for any runs in the store.

Sweeps launched separately (or runs from different days) can be compared this way: the report
is rebuilt from MLflow alone, exactly as the sweep callback builds it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from .compare import summarize, write_report
from .tracking import resolve_uri, sqlite_path, with_retry

HEX_ID = re.compile(r"^[0-9a-f]{32}$")


class CompareError(ValueError):
    """A target that names no runs."""


def find_runs(client: Any, target: str) -> tuple[list[Any], str]:
    """(runs, title) for a parent run id, comma-separated run ids, or an experiment name."""
    ids = [t.strip() for t in target.split(",") if t.strip()]
    if ids and all(HEX_ID.match(i) for i in ids):
        from mlflow.exceptions import MlflowException

        runs = []
        for run_id in ids:
            try:
                runs.append(with_retry(lambda r=run_id: client.get_run(r)))
            except MlflowException:
                raise CompareError(f"Run {run_id} does not exist in this store.") from None
        if len(runs) == 1:
            parent = runs[0]
            children = with_retry(
                lambda: client.search_runs(
                    [parent.info.experiment_id],
                    filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                    max_results=5000,
                )
            )
            if children:
                return children, parent.info.run_name or parent.info.run_id
        return runs, f"Comparison of {len(runs)} runs"
    exp = with_retry(lambda: client.get_experiment_by_name(target))
    if exp is None:
        raise CompareError(
            f"{target!r} is neither a run id (32 hex digits), a comma-separated list of run ids, "
            "nor an experiment name in this store."
        )
    runs = with_retry(lambda: client.search_runs([exp.experiment_id], max_results=5000))
    runs = [r for r in runs if r.data.tags.get("cvsweep.sweep") != "true"]
    if not runs:
        raise CompareError(f"Experiment {target!r} has no runs yet.")
    return runs, f"Experiment {target}"


def compare_main(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    uri = resolve_uri(args.tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        print(f"error: no tracking store at {db}; pass --tracking-uri.", file=sys.stderr)
        return 2
    client = MlflowClient(tracking_uri=uri)
    try:
        runs, title = find_runs(client, args.target)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    by = [k.strip() for k in args.by.split(",")] if args.by else None
    summaries = sorted((summarize(client, r) for r in runs), key=lambda s: s.name)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.target)[:40]
    out = Path(args.out or f"comparison-{safe}")
    paths = write_report(summaries, out, by=by, title=title)
    print(paths[0].read_text())
    print(f"report: {paths[0]}")
    return 0
