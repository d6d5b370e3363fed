"""The tracking store as one job sees it: asked early, then which run the job writes to.

A job either finds an identical run finished (and is skipped), resumes an unfinished run of the
same config (from the state in that run's own job folder when it is not behind the store, else
from the checkpoint the store holds), or has a new run created while it goes on. Every call goes
through the tracking process (store_proxy), so the trainer never imports MLflow.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint import load_checkpoint
from .model_source import CHECKPOINT_NAME
from .store_proxy import Pending, replace_dead, shared_proxy, warn_lost
from .tracking import TrackingError, as_warning, check_writable, resolve_uri, sqlite_path

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from .job import JobContext


def _say(line: str) -> None:
    print(line, flush=True)


class JobStore:
    """The tracking store as one job sees it: asked early, answered when the job needs it."""

    def __init__(self, cfg: DictConfig, ctx: JobContext, chash: str) -> None:
        self.cfg = cfg
        self.uri = resolve_uri(cfg.tracking.uri, ctx.launch_dir)
        self.proxy = shared_proxy()
        # A rerun trains again whatever is finished, but resumes its own interrupted attempt.
        self.rerun_of = ctx.extra_tags.get("rerun_of")
        look_up = chash if cfg.tracking.skip_finished or self.rerun_of else None
        self._open_args = (self.uri, str(cfg.tracking.experiment), look_up, self.rerun_of)
        db = sqlite_path(self.uri)
        # A SQLite store that does not exist yet holds no earlier run: the job need not wait
        # while the tracking process creates it (about a second), only know it can be written.
        # Both are looked at before the tracking process is asked (it makes the store).
        self.fresh = db is not None and not db.exists()
        self.new_folder = db.parent if db is not None and not db.parent.exists() else None
        self._pending: Pending | None = None
        with contextlib.suppress(TrackingError):  # found dead: `answer` starts another
            self._pending = self.proxy.request("open_job", *self._open_args)
        self._answer: dict[str, Any] | None = None
        self._answered = False
        self._new_run: Pending | None = None

    def answer(self) -> dict[str, Any] | None:
        """Experiment id and previous runs; None when tracking is optional and unavailable.

        For a store being created the experiment id is None (`create_run` finds it by name).
        """
        if not self._answered:
            self._answered = True
            try:
                if self.fresh:
                    check_writable(self.uri)
                    if self.new_folder:  # a mistyped path shows here, not as lost runs
                        _say(f"note: made the folder {self.new_folder} for the new tracking store")
                    self._answer = {"experiment_id": None, "finished": None, "resumable": None}
                else:
                    self._answer = self._opened()
            except TrackingError as exc:
                if self.cfg.tracking.required:
                    raise
                self._answer = None
                _say(
                    f"warning: {as_warning(exc)} Training without tracking (tracking.required=false)."
                )
        return self._answer

    def _opened(self) -> dict[str, Any]:
        """The store's answer to the job's first question; a tracking process that died
        before answering is replaced, once (`replace_dead`)."""
        if self._pending is not None:
            try:
                return self._pending.result()
            except TrackingError:
                if not self.proxy.gone:
                    raise  # the store's own answer (unwritable, damaged, not answering)
        self.proxy = replace_dead(self.proxy, "this job")
        return self.proxy.call("open_job", *self._open_args)

    def create_run(self, experiment_id: str | None, name: str, tags: dict[str, str]) -> str:
        """Have the tracking process create the run while the job goes on.

        Returns a handle that names the run in later messages; `run_id` gives the real id.
        """
        handle = f"new-run-{os.getpid()}-{time.monotonic_ns()}"
        args = ("create_run", self.uri, experiment_id, name, tags)
        kwargs = {"experiment": str(self.cfg.tracking.experiment), "handle": handle}
        try:
            self._new_run = self.proxy.request(*args, **kwargs)
        except TrackingError:
            if not self.proxy.gone:
                raise
            self.proxy = replace_dead(self.proxy, "this job")  # before the run was asked for
            self._new_run = self.proxy.request(*args, **kwargs)
        return handle

    def run_id(self, run_id: str | None) -> str | None:
        """The MLflow id behind a handle from `create_run` (other ids are returned as they are)."""
        if self._new_run is None or run_id is None:
            return run_id
        try:
            return str(self._new_run.result())
        except TrackingError as exc:
            warn_lost(f"the run could not be created: {exc}", stdout=True)
            return None


def claim_run(store: JobStore, resumable: dict[str, Any] | None) -> dict[str, Any] | None:
    """Take the run to resume over for this process: the run as the lookup found it, with what
    the store holds of it now that it is ours ("logged_steps", "param_keys") and its status
    before the claim ("previous"). None when there is none, or when another launch of the same
    config has just taken it (then this one trains a run of its own)."""
    if resumable is None:
        return None
    rid = resumable["run_id"]
    try:
        claim = store.proxy.call("claim", store.uri, rid)
    except TrackingError as exc:
        _say(f"warning: cannot resume run {rid}: {exc}; starting a new run")
        return None
    if not claim["ok"]:
        _say(
            f"note: run {rid} of the same config is being resumed by another launch "
            f"({claim['owner']}): this launch leaves it to that one"
        )
        return None
    return {
        **resumable,
        "logged_steps": claim["logged_steps"],
        "param_keys": claim["param_keys"],
        "previous": claim["previous"],
    }


def local_state(resumable: dict[str, Any], chash: str, out_dir: Path) -> dict[str, Any] | None:
    """The state in the unfinished run's own job folder, when it is this run's and not behind
    the store; copied into this job's folder, whose checkpoint the run then uploads.

    A store lost mid-run misses the checkpoints written after it went away, and training went
    on: resuming from the folder continues where training stopped instead of where the store
    did, and `fit` sends the missing points from the state's history.
    """
    path = resumable.get("local_checkpoint")
    if not path:
        return None
    try:
        state = load_checkpoint(Path(path))
    except Exception as exc:
        _say(f"note: the checkpoint {path} cannot be read ({exc}); not resuming from it")
        return None
    if state.get("config_hash") != chash:
        return None  # the folder was reused by another config (a fixed hydra.run.dir)
    # The store's last test accuracy point must be in the state's history, with its value:
    # otherwise the state is behind the store, or another run's.
    steps = resumable["logged_steps"].get("test_acc")  # sorted
    last_step = steps[-1] if steps else None
    last_value = resumable.get("last_test_acc")
    if last_step is not None and last_value is not None:
        point = next((p for p in state["history"] if p["step"] == last_step), None)
        if point is None or abs(float(point["test_acc"]) - float(last_value)) > 1e-9:
            return None
    here = out_dir / CHECKPOINT_NAME
    if Path(path).resolve() != here.resolve():
        shutil.copyfile(path, here)
    return state


def downloaded_state(store: JobStore, run_id: str) -> dict[str, Any] | None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = store.proxy.call(
                "download", store.uri, run_id, "checkpoint/" + CHECKPOINT_NAME, tmp
            )
            return load_checkpoint(Path(path))
        except Exception as exc:
            _say(f"warning: cannot resume run {run_id}: {exc}; starting a new run")
            return None
