"""The Hydra callback that makes a multirun one MLflow parent run with a comparison report.

The parent run id reaches every job through the config: the callback appends
`tracking.parent_run_id=<id>` to the sweep's task overrides before the sweeper reads them, so it
works the same for the basic, joblib and submitit launchers (no environment variables, and not
MLFLOW_RUN_ID, which would make the children write into the parent).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict

from .compare import summarize, write_report
from .config import ConfigError, validate
from .job import RESULT_FILE, run_name
from .tracking import (
    TrackingError,
    client_for,
    ensure_experiment,
    mark_orphans,
    resolve_uri,
    with_retry,
)


def sweep_name(overrides: list[str]) -> str:
    """What a person sees first in the UI: the parent run says what was swept."""
    return "sweep: " + run_name(overrides)


def _split_threads(cfg: DictConfig) -> None:
    """Parallel jobs on one machine split the cores instead of each taking all of them."""
    launcher = cfg.hydra.launcher.get("_target_", "")
    n_jobs = cfg.hydra.launcher.get("n_jobs", None) if "joblib" in launcher else None
    if "submitit" in launcher and "local" in launcher.lower():
        n_jobs = cfg.hydra.launcher.get("array_parallelism", None)
    if n_jobs and int(n_jobs) > 1 and "CVSWEEP_NUM_THREADS" not in os.environ:
        os.environ["CVSWEEP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(n_jobs)))


def job_overrides(config: DictConfig) -> list[list[str]]:
    """Each job's overrides, expanded the way Hydra's basic sweeper will expand them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += [str(o) for o in config.hydra.overrides.task]
    parsed = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def validate_jobs(config: DictConfig, config_name: str | None) -> None:
    """Check every job's values before the parent run exists, so a bad sweep leaves no runs."""
    if "BasicSweeper" not in str(config.hydra.sweeper.get("_target_", "")):
        return  # other sweepers choose jobs as they go; each job still validates itself
    from hydra import compose

    for i, overrides in enumerate(job_overrides(config)):
        try:
            validate(compose(config_name=config_name or "train", overrides=overrides))
        except ConfigError as exc:
            print(f"error: job #{i} ({' '.join(overrides)}): {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.parent_id: str | None = None
        self.client: Any = None
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        _split_threads(config)
        validate_jobs(config, kwargs.get("config_name"))
        if not config.tracking.enabled:
            return
        overrides = list(config.hydra.overrides.task)
        uri = resolve_uri(config.tracking.uri, Path.cwd())
        try:
            self.client = client_for(uri)
            exp_id = ensure_experiment(self.client, uri, config.tracking.experiment)
        except TrackingError as exc:
            if config.tracking.required:
                print(f"error: {exc}", file=sys.stderr, flush=True)
                raise SystemExit(2) from None
            print(f"warning: {exc} Sweeping without tracking.", flush=True)
            return
        mark_orphans(self.client, exp_id)
        command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
        run = with_retry(
            lambda: self.client.create_run(
                exp_id,
                run_name=sweep_name(overrides),
                tags={
                    "cvsweep.sweep": "true",
                    "sweep_dir": str(self.sweep_dir),
                    "command": command,
                    "overrides": " ".join(overrides),
                },
            )
        )
        self.parent_id = run.info.run_id
        with open_dict(config):
            config.hydra.overrides.task.append(f"tracking.parent_run_id={self.parent_id}")
        # Make the store URI absolute for every job, wherever the launcher runs it.
        if not any(o.startswith("tracking.uri=") for o in overrides):
            config.hydra.overrides.task.append(f"tracking.uri={uri}")
        print(f"sweep parent run: {self.parent_id} ({sweep_name(overrides)})", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        results = self._job_results()
        failed = [r for r in results if r.get("status") in ("FAILED", "KILLED")]
        if self.parent_id is not None:
            self._report(results)
        if failed:
            print(
                f"error: {len(failed)} of {len(results)} jobs did not finish "
                f"({', '.join(r.get('status', '?') for r in failed)}); see the report above "
                "and each job's folder.",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(1)

    def _job_results(self) -> list[dict[str, Any]]:
        if self.sweep_dir is None or not self.sweep_dir.is_dir():
            return []
        found = []
        for path in sorted(self.sweep_dir.glob(f"*/{RESULT_FILE}")):
            try:
                found.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return found

    def _report(self, results: list[dict[str, Any]]) -> None:
        client, parent = self.client, self.parent_id
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
        runs = [summarize(client, r) for r in [*children, *extra]]
        runs.sort(key=lambda r: r.name)
        if self.sweep_dir is None:
            return
        name = client.get_run(parent).info.run_name
        paths = write_report(runs, self.sweep_dir, title=name)
        for path in paths:
            with_retry(lambda p=path: client.log_artifact(parent, str(p)))
        print((self.sweep_dir / "comparison.md").read_text(), flush=True)
        no_run = [r for r in results if not r.get("run_id")]
        bad = any(r.status != "FINISHED" for r in runs) or bool(no_run)
        with_retry(lambda: client.set_terminated(parent, "FAILED" if bad else "FINISHED"))
        print(f"comparison report: {self.sweep_dir / 'comparison.md'}", flush=True)
