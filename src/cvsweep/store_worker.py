"""The tracking process: owns the MLflow client and does every store write for one trainer.

Importing MLflow, opening a SQLite store and drawing `curves.png` cost seconds of CPU that a
training run should not wait for. `store_proxy` starts this process as soon as a job knows it
will track; it imports MLflow on another core while the trainer imports torch and loads data,
then takes the run's metrics, tags and artifacts as messages and writes them in batches while
training goes on. Messages are handled strictly in order, so a tag written after an artifact
upload is never seen before it.

Protocol (pickled over two pipes): the trainer sends ``(id, op, args, kwargs, wants_reply)``;
the answer is ``(id, "ok", result)`` or ``(id, "err", kind, message)``. Ops without a reply
record their failures, which the trainer collects with the ``failures`` op. End of input means
the trainer is gone: what was received is still written, then the process exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .model_source import CHECKPOINT_NAME
from .store_errors import broken_store, busy_store, from_store
from .tracking import (
    CLAIM_TAG,
    INCOMPLETE_TAG,
    OWNER_KEYS,
    MlflowTracker,
    TrackingError,
    client_for,
    ensure_experiment,
    limit_http_retries,
    live_owner,
    mark_orphans,
    owner_tags,
    probe_server,
    sqlite_path,
    unreachable,
    unreachable_cause,
    with_retry,
)
from .tracking_files import remove_snapshot


def _disk_full(exc: BaseException) -> str:
    """SQLite's own words when a write failed for want of space (its message, else '')."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    for words in ("database or disk is full", "disk i/o error"):
        if words in text.lower():
            return words
    return ""


def _store_failure(
    uri: str, exc: BaseException, args: tuple[Any, ...], op: str | None
) -> str | None:
    """A store call's failure as the one paragraph the user sees; None where it is not the
    store's to say (the caller re-raises it). `op`: the store-wide operation that failed."""
    db = sqlite_path(uri)
    if db is None:
        return None
    full = _disk_full(exc)
    if full:
        return (
            f"The tracking store {db} cannot be written: its disk is full (SQLite: {full}). "
            "Free space there and run the same command again, or point tracking.uri at a "
            "store on another disk."
        )
    reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    broken = broken_store(exc)
    if op is not None and from_store(exc) and not broken:
        if op == "download":  # the store answered: the run's artifact is what is missing
            return f"its {args[2]} artifact cannot be downloaded from {uri} ({reason})"
        if busy_store(exc):
            return (
                f"The tracking store {db} is busy: another process held a lock on it for "
                f"longer than MLflow waits ({reason}). Nothing in it was changed; run the same "
                "command again once that process is done, or point tracking.uri at another "
                "store."
            )
        # MLflow's own failure (e.g. a store whose creation was cut short): its first line,
        # with the file it is about, not SQLAlchemy's SQL dump.
        return (
            f"The tracking store {db} cannot be used ({reason}). If its creation was cut short "
            f"(a full disk, a killed process), move it aside (mv {db} {db}.broken) to start a "
            "new store there; otherwise point tracking.uri at another store, or set "
            "tracking.enabled=false."
        )
    if not broken:
        return None
    return (
        f"The tracking store {db} is damaged or is not an MLflow database ({reason[:200]}). "
        f"Nothing in it was changed. Move it aside (mv {db} {db}.broken) to start a new store "
        "there, point tracking.uri at another store, or set tracking.enabled=false."
    )


class StoreDown(TrackingError):
    """A write not attempted: the store stopped answering earlier in this process."""


def _logged_steps(client: Any, run: Any) -> dict[str, list[int]]:
    """The steps each of a run's metrics has in the store.

    A resumed run sends its history again, or trains again from its last checkpoint; the
    points already here (MLflow cannot delete single points) are not sent a second time, and
    the ones missing, before or after the store's last, are.
    """
    steps: dict[str, list[int]] = {}
    for key in run.data.metrics:
        history = with_retry(lambda k=key: client.get_metric_history(run.info.run_id, k))
        steps[key] = sorted({int(m.step) for m in history})
    return steps


def _local_checkpoint(tags: dict[str, str]) -> str | None:
    """The checkpoint in an unfinished run's own job folder, where this host can read it.

    It can be ahead of the one the store holds: a store lost mid-run missed the later
    uploads while training went on and wrote them locally. The trainer checks that it is
    this run's before resuming from it (job_store.local_state).
    """
    folder = tags.get("output_dir")
    if not folder or tags.get("cvsweep.host") != socket.gethostname():
        return None
    path = Path(folder) / CHECKPOINT_NAME
    return str(path) if path.is_file() else None


@dataclass
class _Outage:
    """A store that stopped answering: when, why, and the writes skipped since."""

    since: float  # time.time()
    reason: str
    checked: float  # time.monotonic() of the last look
    skipped: int = 0
    runs: set[str] = field(default_factory=set)

    def count(self, run_id: str | None) -> None:
        """One more write not made (to run_id, where it names one)."""
        self.skipped += 1
        if run_id:
            self.runs.add(run_id)

    def report(self, uri: str) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.since))
        runs = ", ".join(sorted(self.runs)) or "none"
        writes = "1 write was" if self.skipped == 1 else f"{self.skipped} writes were"
        return (
            f"{writes} not made (runs: {runs}): the tracking store {uri} stopped answering "
            f"(a write failed at {when}: {self.reason}). The job's files in its output "
            "folder are complete. Once the store is back, run the same command again: the "
            "run is resumed from its last checkpoint (its job folder's on this machine, else "
            "the store's) and the store gets the points it missed."
        )


class StoreSession:
    """The store-side state of one trainer process: clients, open runs, failures."""

    PROBE_EVERY_S = 5.0  # how often a store that stopped answering is looked at again

    def __init__(self) -> None:
        self.runs: dict[str, MlflowTracker] = {}
        self.run_uris: dict[str, str] = {}
        self.handles: dict[str, str] = {}  # trainer's name for a run -> its MLflow id
        self.failures: list[str] = []
        self.outages: dict[str, _Outage] = {}
        # Writes of each run that were not made: a run that has any is not complete in the
        # store, whatever its status (op_finish_run tags it, op_open_job resumes it).
        self.lost_writes: dict[str, int] = {}
        self.plots_wanted = False  # a run exists: its end will draw curves.png

    # ------------------------------------------------------------ helpers
    def _run(self, uri: str, run_id: str) -> MlflowTracker:
        run_id = self.handles.get(run_id, run_id)
        run = self.runs.get(run_id)
        if run is None:
            run = self.runs[run_id] = MlflowTracker(client_for(uri), run_id)
            self.run_uris[run_id] = uri
        return run

    def note_lost(self, run_id: str | None) -> None:
        if run_id:
            run_id = self.handles.get(run_id, run_id)
            self.lost_writes[run_id] = self.lost_writes.get(run_id, 0) + 1

    def guarded(
        self, uri: str, run_id: str | None, what: str, fn: Any, answered: bool = False
    ) -> Any:
        """fn(), unless the store stopped answering: then skip it at once and count it.

        A store that fails with "nothing answers" is marked down; later writes are skipped
        without MLflow's retries, and the store is looked at again every few seconds, so a
        job whose server went away ends in seconds and says once what was not written.
        """
        run = self.handles.get(run_id, run_id) if run_id else None
        # `answered`: the trainer waits for this op's answer and says itself what failed (a
        # lookup, a run not created): it is not also counted as a write silently lost.
        outage = self.outages.get(uri)
        if outage is not None and not self._back(uri, outage):
            if answered:
                raise StoreDown(f"the tracking store {uri} is not answering ({outage.reason})")
            outage.count(run)
            self.note_lost(run)
            raise StoreDown(f"{what}: not written, the tracking store {uri} is not answering")
        try:
            return fn()
        except Exception as exc:
            if uri.startswith(("http://", "https://")) and unreachable(exc):
                outage = self.outages.setdefault(
                    uri, _Outage(time.time(), _short_reason(exc), time.monotonic())
                )
                if answered:
                    known = isinstance(exc, TrackingError)  # already one paragraph
                    raise StoreDown(str(exc) if known else f"{what}: {_describe(exc)}") from None
                outage.count(run)
                self.note_lost(run)
                raise StoreDown(f"{what}: {_describe(exc)}") from None
            if run is not None and not answered:
                self.note_lost(run)
            raise

    def _back(self, uri: str, outage: _Outage) -> bool:
        if time.monotonic() - outage.checked < self.PROBE_EVERY_S:
            return False
        outage.checked = time.monotonic()
        try:
            probe_server(uri, timeout=2.0)
        except TrackingError:
            return False
        self.failures.append(outage.report(uri))
        del self.outages[uri]
        return True

    def flush_all(self) -> None:
        for run in self.runs.values():
            uri = self.run_uris.get(run.run_id, "")
            try:
                self.guarded(uri, run.run_id, "metrics", run.flush)
            except StoreDown:
                run.drop_pending()
            except Exception as exc:
                self.failures.append(f"metrics of run {run.run_id}: {_describe(exc)}")
                run.drop_pending()

    def take_failures(self) -> list[str]:
        """Failures so far, each store that stopped answering as one line; then forget them."""
        found = self.failures + [o.report(uri) for uri, o in self.outages.items() if o.skipped]
        self.failures = []
        for outage in self.outages.values():
            outage.skipped, outage.runs = 0, set()
        return found

    def pending_metrics(self) -> bool:
        return any(run.pending for run in self.runs.values())

    def import_plots(self) -> None:
        """matplotlib (~0.5 s) for the end of a run, imported while nothing else is asked."""
        from . import plots  # noqa: F401

        self.plots_wanted = False

    # ------------------------------------------------------------ ops
    # Ops whose first argument is a store URI, and (where they have one) whose second is a run.
    _STORE_OPS = (
        "open_job",
        "claim",
        "give_back",
        "download",
        "update_status",
        "create_run",
        "sweep_report",
    )
    _RUN_OPS = ("metrics", "params", "tags", "untag", "artifact", "artifacts")

    def handle(
        self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], answered: bool = False
    ) -> Any:
        fn = getattr(self, f"op_{op}")
        if op not in self._STORE_OPS and op not in self._RUN_OPS:
            return fn(*args, **kwargs)
        try:
            return self._guarded_op(op, fn, args, kwargs, answered)
        finally:
            if op == "artifact" and args[-1] is True:
                # A snapshot is removed whether it was uploaded, failed, or skipped because the
                # store is down: nobody else will (one full checkpoint per epoch otherwise).
                remove_snapshot(Path(args[2]))

    def _guarded_op(
        self, op: str, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], answered: bool
    ) -> Any:
        """fn through `guarded`, with the store's own failures said in one paragraph."""
        uri = str(args[0])
        run_id = str(args[1]) if op in self._RUN_OPS else None
        try:
            return self.guarded(uri, run_id, op, lambda: fn(*args, **kwargs), answered)
        except Exception as exc:
            said = _store_failure(uri, exc, args, op if op in self._STORE_OPS else None)
            if said is None:
                raise
            raise TrackingError(said) from None

    def op_warm(self) -> None:
        """The imports every store needs, before anyone asks (about 2 s of one core)."""
        from mlflow import MlflowClient  # noqa: F401
        from mlflow.store.tracking import sqlalchemy_store  # noqa: F401

    def op_open_job(
        self, uri: str, experiment: str, config_hash: str | None, rerun_of: str | None = None
    ) -> dict[str, Any]:
        """Experiment id, orphans marked, and the previous runs with this config (if asked).

        With rerun_of, only the reruns of that run count: an interrupted rerun resumes, while
        the original (and any finished rerun) never makes a rerun skip.
        """
        client = client_for(uri)
        exp_id = ensure_experiment(client, uri, experiment)
        orphans = mark_orphans(client, exp_id)
        found: dict[str, Any] = {
            "experiment_id": exp_id,
            "finished": None,
            "resumable": None,
            "orphans": orphans,
            "busy": [],  # RUNNING runs of this config that a live process may still write
        }
        if config_hash is None:
            return found
        runs = with_retry(
            lambda: client.search_runs(
                [exp_id],
                filter_string=f"tags.config_hash = '{config_hash}'"
                + (f" and tags.rerun_of = '{rerun_of}'" if rerun_of else ""),
                order_by=["attributes.start_time DESC"],
                max_results=50,
            )
        )
        for r in runs:
            tags = r.data.tags
            if r.info.status == "RUNNING":
                owner = live_owner(client, r)
                if owner is not None:
                    found["busy"].append({"run_id": r.info.run_id, "owner": owner})
                    continue
            incomplete = r.info.status == "FINISHED" and INCOMPLETE_TAG in tags
            if r.info.status == "FINISHED" and not incomplete and found["finished"] is None:
                found["finished"] = {
                    "run_id": r.info.run_id,
                    "final_test_acc": r.data.metrics.get("final_test_acc"),
                    "output_dir": tags.get("output_dir"),
                }
            if (
                found["resumable"] is None
                and (r.info.status in ("KILLED", "FAILED", "RUNNING") or incomplete)
                and tags.get("failure_reason") != "non_finite_loss"
            ):
                uploaded = bool(tags.get("cvsweep.checkpoint_epoch"))
                local = _local_checkpoint(tags)
                if uploaded or local:
                    found["resumable"] = {
                        "run_id": r.info.run_id,
                        "status": r.info.status,
                        "uploaded": uploaded,
                        "local_checkpoint": local,
                        "last_test_acc": r.data.metrics.get("test_acc"),
                    }
        return found

    CLAIM_SETTLE_S = 0.5  # longer than a store write takes: see op_claim

    def op_claim(self, uri: str, run_id: str) -> dict[str, Any]:
        """Make a run this trainer's to resume, unless another live process holds it.

        MLflow has no compare-and-set, so: read the run fresh (a live owner means no), write
        this trainer's owner tags with a token of its own and the status RUNNING, wait
        longer than a write takes, and read again. Of launches that got past the first read
        together, each wrote before any read again, so all of them see the last writer's
        token and only that one resumes; the others start runs of their own. Answers
        {"ok": bool, "owner": who holds it, "previous": status and owner tags to give back,
        "logged_steps" and "param_keys": what the store holds of the run once it is ours}.
        """
        from mlflow.entities import RunTag

        client = client_for(uri)
        fresh = with_retry(lambda: client.get_run(run_id))
        owner = live_owner(client, fresh) if fresh.info.status == "RUNNING" else None
        if owner is not None:
            return {"ok": False, "owner": owner}
        if fresh.info.status == "FINISHED" and INCOMPLETE_TAG not in fresh.data.tags:
            return {"ok": False, "owner": "finished meanwhile by another launch"}
        previous = {
            "status": fresh.info.status,
            "tags": {k: fresh.data.tags[k] for k in OWNER_KEYS if k in fresh.data.tags},
        }
        token = uuid.uuid4().hex
        mine = {**owner_tags(os.getppid()), CLAIM_TAG: token}  # the trainer is the parent
        with_retry(lambda: client.log_batch(run_id, tags=[RunTag(k, v) for k, v in mine.items()]))
        with_retry(lambda: client.update_run(run_id, status="RUNNING"))
        time.sleep(self.CLAIM_SETTLE_S)
        now = with_retry(lambda: client.get_run(run_id))
        if now.data.tags.get(CLAIM_TAG) != token:
            return {"ok": False, "owner": live_owner(client, now) or "another launch"}
        # Read now, not when the run was chosen: what the store holds once it is ours.
        return {
            "ok": True,
            "owner": None,
            "previous": previous,
            "logged_steps": _logged_steps(client, now),
            "param_keys": sorted(now.data.params),
        }

    def op_give_back(self, uri: str, run_id: str, previous: dict[str, Any]) -> None:
        """A claimed run this trainer could not resume after all: as it was before."""
        client = client_for(uri)
        if previous["tags"]:
            from mlflow.entities import RunTag

            tags = [RunTag(k, v) for k, v in previous["tags"].items()]
            with_retry(lambda: client.log_batch(run_id, tags=tags))
        with_retry(lambda: client.update_run(run_id, status=previous["status"]))

    def op_download(self, uri: str, run_id: str, artifact: str, dest: str) -> str:
        client = client_for(uri)
        return str(with_retry(lambda: client.download_artifacts(run_id, artifact, dest)))

    def op_update_status(self, uri: str, run_id: str, status: str) -> None:
        client = client_for(uri)
        with_retry(lambda: client.update_run(run_id, status=status))

    def op_create_run(
        self,
        uri: str,
        experiment_id: str | None,
        name: str,
        tags: dict[str, str],
        experiment: str | None = None,
        handle: str | None = None,
    ) -> str:
        """A new run; with a handle, later messages may name the run by it (see job_store.JobStore)."""
        client = client_for(uri)
        if experiment_id is None:
            experiment_id = ensure_experiment(client, uri, str(experiment))
        run = with_retry(lambda: client.create_run(experiment_id, tags=tags, run_name=name))
        if handle is not None:
            self.handles[handle] = str(run.info.run_id)
        self.plots_wanted = True
        return str(run.info.run_id)

    def op_metrics(self, uri: str, run_id: str, points: list[tuple[str, float, int, int]]) -> None:
        run = self._run(uri, run_id)
        run.add_metrics(points)

    def op_untag(self, uri: str, run_id: str, keys: list[str]) -> None:
        """Drop tags that described an earlier attempt (a resumed run is no longer failed)."""
        run = self._run(uri, run_id)
        tags = with_retry(lambda: run.client.get_run(run.run_id)).data.tags
        for key in keys:
            if key in tags:
                try:
                    with_retry(lambda k=key: run.client.delete_tag(run.run_id, k))
                except Exception:
                    now = with_retry(lambda: run.client.get_run(run.run_id)).data.tags
                    if key in now:
                        raise  # still there: a real failure (gone meanwhile is fine)

    def op_params(self, uri: str, run_id: str, params: dict[str, Any]) -> None:
        self._run(uri, run_id).log_params(params)

    def op_tags(self, uri: str, run_id: str, tags: dict[str, str]) -> None:
        self._run(uri, run_id).set_tags(tags)

    def op_artifact(
        self, uri: str, run_id: str, path: str, artifact_path: str | None, remove: bool
    ) -> None:
        run = self._run(uri, run_id)
        # The points sent before this file go in first: a checkpoint in the store then
        # always comes with every metric up to it, so a resumed run has no gap. A snapshot
        # (`remove`) is deleted by `handle` afterwards.
        run.flush()
        run.log_artifact(Path(path), artifact_path)

    def op_artifacts(self, uri: str, run_id: str, folder: str, artifact_path: str | None) -> None:
        self._run(uri, run_id).log_artifacts(Path(folder), artifact_path)

    def op_finish_run(
        self,
        uri: str,
        run_id: str,
        status: str,
        metrics: dict[str, float],
        step: int,
        history: list[dict[str, Any]],
        curves_path: str | None,
        artifacts: list[tuple[str, str | None]],
    ) -> None:
        """Final metrics, curves.png, the last artifacts, then the status; each part on its own.

        One part failing (a full disk, a store that went away) never keeps the others, and
        least of all the status, from being written; failures go to `op_failures`.
        """
        try:
            run = self.guarded(uri, run_id, "finish", lambda: self._run(uri, run_id))
        except StoreDown:
            self.runs.pop(self.handles.get(run_id, run_id), None)
            return
        run_id = run.run_id
        now = int(time.time() * 1000)
        steps = [
            (
                "final metrics",
                lambda: run.add_metrics([(k, v, now, step) for k, v in metrics.items()]),
            ),
            ("metrics", run.flush),
        ]
        if history and curves_path:
            steps.append(("curves.png", lambda: self._curves(run, history, Path(curves_path))))
        for path, artifact_path in artifacts:
            steps.append(
                (Path(path).name, lambda p=path, a=artifact_path: run.log_artifact(Path(p), a))
            )
        for what, fn in steps:
            self._finish_step(uri, run_id, what, fn)
        lost = self.lost_writes.get(run_id, 0)
        if status == "FINISHED" and lost:
            # Trained to the end, but the store missed some of it (a server away for a while):
            # the tag keeps the next launch from skipping the run as finished; it resumes the
            # run instead and sends what is missing. Without the tag, no FINISHED either.
            tag = {INCOMPLETE_TAG: f"{lost} writes were not made"}
            if not self._finish_step(uri, run_id, "incomplete tag", lambda: run.set_tags(tag)):
                self.runs.pop(run_id, None)
                return
        self._finish_step(uri, run_id, f"status {status}", lambda: run.finish(status))
        self.runs.pop(run_id, None)

    def _finish_step(self, uri: str, run_id: str, what: str, fn: Any) -> bool:
        try:
            self.guarded(uri, run_id, what, fn)
            return True
        except StoreDown:
            return False  # counted in the store's outage, reported once
        except Exception as exc:
            self.failures.append(f"{what} of run {run_id}: {_describe(exc)}")
            return False

    @staticmethod
    def _curves(run: MlflowTracker, history: list[dict[str, Any]], path: Path) -> None:
        from .plots import curves_figure

        points = [SimpleNamespace(**p) for p in history]
        run.log_artifact(curves_figure(points, path))

    def op_sweep_report(
        self, uri: str, parent_id: str, sweep_dir: str, results: list[dict[str, Any]]
    ) -> str:
        from .compare import sweep_report

        self.flush_all()
        return sweep_report(client_for(uri), parent_id, Path(sweep_dir), results)

    def op_failures(self) -> list[str]:
        """Everything that failed since the last call; also a barrier (all earlier ops ran)."""
        self.flush_all()
        return self.take_failures()


def _short_reason(exc: BaseException) -> str:
    """The cause in a few words: MLflow's HTTP errors run to several hundred characters."""
    cause = unreachable_cause(exc)
    if cause is not None:
        return cause
    text = _describe(exc)
    return text if len(text) <= 200 else text[:200].rsplit(" ", 1)[0] + " ..."


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TrackingError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def serve(inbox_conn: Connection, outbox_conn: Connection) -> None:
    """Handle messages until the trainer says close or goes away."""
    inbox: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        # A reader thread keeps the pipe drained, so the trainer never blocks on a send while
        # this process is busy with a slow write.
        while True:
            try:
                inbox.put(inbox_conn.recv())
            except (EOFError, OSError):
                inbox.put(None)
                return

    threading.Thread(target=read, daemon=True).start()
    session = StoreSession()
    while True:
        if session.plots_wanted and inbox.empty():
            session.import_plots()
            continue
        try:
            timeout = MlflowTracker.FLUSH_SECONDS if session.pending_metrics() else None
            msg = inbox.get(timeout=timeout)
        except queue.Empty:
            session.flush_all()
            continue
        if msg is None:  # the trainer is gone: write what we have and stop
            session.flush_all()
            return
        msg_id, op, args, kwargs, wants_reply = msg
        if op == "close":
            session.flush_all()
            _reply(outbox_conn, (msg_id, "ok", session.take_failures()))
            # Everything is written and committed; skip the second of interpreter teardown
            # (MLflow, SQLAlchemy, matplotlib) that the trainer would otherwise wait for.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        try:
            result = session.handle(op, args, kwargs, answered=wants_reply)
        except Exception as exc:
            if wants_reply:
                kind = "TrackingError" if isinstance(exc, TrackingError) else type(exc).__name__
                _reply(outbox_conn, (msg_id, "err", kind, str(exc)))
            elif not isinstance(exc, StoreDown):
                session.failures.append(f"{op}: {_describe(exc)}")
            continue
        if wants_reply:
            _reply(outbox_conn, (msg_id, "ok", result))


def _reply(conn: Connection, message: tuple[Any, ...]) -> None:
    with contextlib.suppress(OSError):
        conn.send(message)


def main(argv: list[str]) -> int:
    # The trainer decides when a run ends: Ctrl-C or SIGTERM sent to the whole process group
    # must not stop this process before the trainer has recorded the run as KILLED.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    limit_http_retries()
    # The trainer's output is the user's: no download progress bars, no notes about creating
    # the store's tables (warnings and errors still show).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    # MLflow writes "View run ... at: <url>" lines to stdout for a server store; this process
    # answers through its pipes and has nothing for the trainer's stdout.
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    with contextlib.suppress(OSError):
        os.nice(5)  # training comes first when both want the same core
    read_fd, write_fd = int(argv[0]), int(argv[1])
    serve(Connection(read_fd, writable=False), Connection(write_fd, readable=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
