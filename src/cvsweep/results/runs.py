"""What the store measured for a preset, grouped so that numbers from different budgets are
never averaged together.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..compare import RunSummary, summarize
from ..store_errors import StoreError, open_client
from ..tracking import search_all_runs, with_retry
from .presets import TIMED, Preset

# Override keys that do not change what a run measures (where it is logged, how it is shown).
IGNORED_OVERRIDE_PREFIXES = ("tracking.", "hydra", "experiment", "trainer.progress")


class ReportError(RuntimeError):
    """The store cannot be read; the message says which store and what to do."""


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
    return search_all_runs(client, ids, filter_string)


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
