"""One training job from start to end: validate, load, build, track, train, report.

This is the only place where the engine, the data and the tracker meet. It always closes the
tracking run -- FINISHED, FAILED (with reason and traceback) or KILLED -- so one failure never
leaves a run hanging in the store or kills the other jobs of a sweep.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from . import data as data_mod
from .checkpoint import FileWriteError
from .config import (
    SCHEDULER_SETTINGS,
    total_epochs,
    unused_by_scheduler,
    unused_with_phases,
    validate,
)
from .engine import Interrupted, NonFiniteLoss, Trainer, TrainResult
from .identity import GROUPS, RESULT_FILE, config_hash, read_job_result, run_name
from .job_folder import holds_run
from .job_store import JobStore, claim_run, downloaded_state, local_state
from .model import build_model
from .model_source import MODEL_NAME
from .optim import onecycle_pct, optimizers_text, plan_phases
from .report import shape_report
from .runtime import (
    configure_cudnn,
    configure_threads,
    cpu_tags,
    device_name,
    keep_freed_memory,
    oversubscribed_note,
    resolve_device,
    seed_everything,
    set_deterministic,
)
from .signals import HeldSignals, Terminated
from .store_proxy import LOST, ProxyTracker, warn_lost
from .tracker import NullTracker
from .tracking import (
    INCOMPLETE_TAG,
    flatten,
    orphan_note,
    owner_tags,
)


@dataclass
class JobContext:
    """What the job needs to know about how it was launched (from Hydra, or from rerun)."""

    output_dir: Path
    overrides: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)
    job_num: int = 0
    multirun: bool = False
    config_dir: Path | None = None  # Hydra's .hydra folder (config.yaml, overrides.yaml, ...)
    command: str = ""
    launch_dir: Path = field(default_factory=Path.cwd)
    extra_tags: dict[str, str] = field(default_factory=dict)


@dataclass
class JobOutcome:
    status: str  # FINISHED | FAILED | KILLED | SKIPPED
    run_id: str | None
    final_test_acc: float | None = None
    error: str | None = None
    signal: int | None = None  # what stopped a KILLED job
    # Tracking writes this job's process reported as not made (for a sweep whose jobs run
    # in other processes: its launching process turns them into the exit code).
    tracking_problems: int = 0
    pid: int = field(default_factory=os.getpid)  # the process that ran the job
    host: str = field(default_factory=socket.gethostname)
    # Where it trained ("cpu", "cuda") and on how many threads: `cvsweep evaluate` scores the
    # saved model the same way, so that it can say whether it got the logged number.
    device: str | None = None
    num_threads: int | None = None
    # The dataset.root it read, absolute: its config's default comes from $CVSWEEP_DATA,
    # which a later shell may not have.
    data_root: str | None = None
    # A SKIPPED job in the folder its finished run trained in (the same command again with a
    # fixed hydra.run.dir): the model.pth there is that run's own, as the record before said.
    trained_here: bool = False

    @property
    def exit_code(self) -> int:
        """The shell's code for a process stopped by a signal: 130 for Ctrl-C, 143 for SIGTERM."""
        return 128 + (self.signal or signal.SIGTERM)

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RESULT_FILE).write_text(json.dumps(self.__dict__, indent=2))


def _git_info(root: Path) -> dict[str, str]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if commit.returncode != 0:
        return {}
    return {
        "git_commit": commit.stdout.strip(),
        "mlflow.source.git.commit": commit.stdout.strip(),
        "git_dirty": str(bool(dirty.stdout.strip())).lower(),
    }


def reproduce_command(overrides: list[str]) -> str:
    kept = [o for o in overrides if not o.startswith("tracking.parent_run_id")]
    return " ".join(["python", "train.py", *(shlex.quote(o) for o in kept)])


class _TrackedTrainer(Trainer):
    """Uploads every checkpoint it writes: a lost machine loses one epoch at most, and a
    signal's exact state is what the same command resumes from.

    The upload reads a hard-linked snapshot, so the next epoch's checkpoint can replace the
    file while the tracking process is still copying this one.
    """

    def on_checkpoint(self, epoch: int) -> None:
        if isinstance(self.tracker, ProxyTracker):
            _upload_checkpoint(self.tracker, self.checkpoint_path, epoch)


def _upload_checkpoint(tracker: ProxyTracker, path: Path, epoch: int) -> None:
    """Upload a hard-linked snapshot of the checkpoint and say which epoch it ends."""
    # A folder of its own per upload: an earlier one of the same epoch (a resumed state's,
    # an earlier attempt's that the store never took) may still be waiting for its upload.
    snapshot = Path(tempfile.mkdtemp(prefix=f".checkpoint-epoch{epoch}-", dir=path.parent))
    snapshot = snapshot / path.name
    try:
        os.link(path, snapshot)
    except OSError:
        shutil.copyfile(path, snapshot)
    tracker.log_artifact(snapshot, "checkpoint", remove=True)
    tracker.set_tags({"cvsweep.checkpoint_epoch": str(epoch)})


def _console(line: str) -> None:
    print(line, flush=True)


def run_job(cfg: DictConfig, ctx: JobContext, held: HeldSignals | None = None) -> JobOutcome:
    """Run one job; raises only for errors that must stop the caller (bad config in a single run).

    In a multirun, failures are recorded (FAILED run, job_result.json) and returned, so the
    launcher goes on with the other jobs; the sweep callback turns them into a non-zero exit.

    Ctrl-C and SIGTERM wait while a job that has stopped training records how it ended: a press
    there used to cut the job between its FINISHED run and its summary, losing the result file
    and the lines naming the model and the run although nothing was left to stop. A held signal
    takes effect once the job has returned (a sweep then starts no further job); a caller that
    passes its own `held` releases it and acts on what arrived itself.
    """
    if held is not None:
        return _run_job(cfg, ctx, held)
    held = HeldSignals(signal.SIGINT, signal.SIGTERM, second_ctrl_c_stops=True)
    try:
        return _run_job(cfg, ctx, held)
    finally:
        held.release()
        if _signals_stop_this_process(ctx):
            held.deliver()


def _signals_stop_this_process(ctx: JobContext) -> bool:
    """In a parallel sweep's worker a finished job just returns: the launching process got the
    same Ctrl-C (or passes SIGTERM on) and stops the sweep itself."""
    if not ctx.multirun:
        return True
    from .sweep import jobs_run_here

    return jobs_run_here()


def _run_job(cfg: DictConfig, ctx: JobContext, held: HeldSignals) -> JobOutcome:
    t_start = time.perf_counter()
    lost_before = len(LOST.problems)
    if cfg.tracking.enabled and cfg.tracking.required:
        LOST.required = True
    out_dir = Path(ctx.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    validate(cfg)
    device = resolve_device(cfg.trainer.device)
    set_deterministic(bool(cfg.trainer.deterministic))
    configure_cudnn(cfg.trainer, device)
    threads = configure_threads(int(cfg.trainer.num_threads))
    crowded = oversubscribed_note(threads) if int(cfg.trainer.num_threads) > 0 else None
    if crowded:  # a count the user chose; torch's own choice is left to torch
        _console(crowded)
    keep_freed_memory()
    chash = config_hash(cfg)
    fetching = not cfg.trainer.shapes_only and data_mod.refuse_unusable_root(
        cfg.dataset.root, cfg.dataset.name
    )
    # The store is asked now and answers while the data loads (see store_proxy); only a
    # download waits for it first, so a broken store is reported before minutes of fetching.
    store = JobStore(cfg, ctx, chash) if cfg.tracking.enabled else None
    if store is not None and fetching:
        store.answer()
    prepared = _prepare(cfg, device, out_dir)
    found = store.answer() if store is not None else None

    tracker: ProxyTracker | NullTracker = NullTracker()
    claimed: dict[str, Any] | None = None  # the unfinished run this job resumes, once ours
    resume_state: dict[str, Any] | None = None
    local = False  # resumed from the run's own job folder, not from the store
    run_id: str | None = None
    if store is not None and found is not None:
        for orphan in found.get("orphans") or []:
            _console(orphan_note(orphan))
        for busy in found.get("busy") or []:
            _console(
                f"note: run {busy['run_id']} of the same config is still RUNNING "
                f"({busy['owner']}): this launch leaves it to that process"
            )
        if found["finished"] is not None and store.rerun_of is None:
            fid = found["finished"]["run_id"]
            if cfg.trainer.shapes_only:  # the report is what was asked for: it costs nothing
                _console(prepared.report_md.read_text().rstrip())
            _console(f"skipped: identical to finished run {fid}{_finished_run_files(found)}")
            outcome = _skipped_outcome(out_dir, fid, found["finished"]["final_test_acc"])
            outcome.write(out_dir)
            return outcome
        claimed = claim_run(store, found["resumable"])
        if claimed is not None:
            rid = claimed["run_id"]
            resume_state, local = local_state(claimed, chash, out_dir), True
            if resume_state is None and claimed["uploaded"]:
                resume_state, local = downloaded_state(store, rid), False
            if resume_state is None:  # as it was before the claim
                store.proxy.post("give_back", store.uri, rid, claimed["previous"])
            else:
                stale = ["failure_reason", "failure_step", INCOMPLETE_TAG]
                store.proxy.post("untag", store.uri, rid, stale)
                run_id = rid
                where = (
                    f"the checkpoint in its job folder {Path(claimed['local_checkpoint']).parent}"
                    if local
                    else "its checkpoint"
                )
                _console(
                    f"resuming run {rid} ({claimed['status']}) from {where} "
                    f"at step {resume_state['step']}"
                )
    _console(prepared.report_md.read_text().rstrip())
    moot = unused_with_phases(cfg, ctx.overrides)
    if moot and not cfg.trainer.shapes_only:
        _console(
            f"note: schedule {cfg.schedule.name} trains in phases that set their own epochs and "
            f"optimizer: {' '.join(moot)} not used (set schedule.phases.N.epochs or "
            "schedule.phases.N.optimizer.KEY instead)"
        )
    ignored = unused_by_scheduler(str(cfg.schedule.scheduler), ctx.overrides)
    if ignored and not cfg.trainer.shapes_only:
        reads = SCHEDULER_SETTINGS.get(str(cfg.schedule.scheduler), ())
        _console(
            f"note: {' '.join(ignored)} not used: the {cfg.schedule.scheduler} scheduler of "
            f"schedule {cfg.schedule.name} reads "
            + (", ".join(f"schedule.{k}" for k in reads) if reads else "no schedule setting")
            + " (choose another with schedule=...)"
        )
    named = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if store is not None and named and named != str(cfg.tracking.experiment):
        # MLflow's own variable; cvsweep's setting is tracking.experiment (as with the store,
        # whose MLFLOW_TRACKING_URI is read, the run should not land where the user did not look).
        _console(
            f"note: MLFLOW_EXPERIMENT_NAME={shlex.quote(named)} is not read: this run is logged in "
            f"experiment {str(cfg.tracking.experiment)!r}; choose the experiment with "
            f"{shlex.quote('tracking.experiment=' + named)}"
        )
    if store is not None and found is not None:
        if run_id is None:
            tags = {"config_hash": chash, **owner_tags(os.getpid())}
            if cfg.tracking.parent_run_id:
                tags["mlflow.parentRunId"] = str(cfg.tracking.parent_run_id)
            run_id = store.create_run(found["experiment_id"], run_name(ctx.overrides), tags)
        logged = claimed["logged_steps"] if claimed and resume_state is not None else None
        tracker = ProxyTracker(store.proxy, store.uri, run_id, logged_steps=logged)

    status, error, result = "FAILED", None, None
    stopped_by: int | None = None
    t_train = time.perf_counter()
    t_trained = t_train
    try:
        if isinstance(tracker, ProxyTracker):
            logged_params = None  # a resumed run's (the claim read them)
            if claimed and resume_state is not None:
                logged_params = set(claimed["param_keys"])
            _log_run_setup(tracker, cfg, ctx, chash, device, threads, logged_params)
        if cfg.trainer.shapes_only:
            tracker.log_artifact(prepared.report_md)
            tracker.log_artifact(prepared.report_json)
            _console(f"shape report: {prepared.report_md} (trainer.shapes_only=true: no training)")
        else:
            result = _train(cfg, prepared, device, tracker, out_dir, resume_state, local)
        status = "FINISHED"
    except Interrupted as exc:
        status, error, stopped_by = "KILLED", str(exc), exc.signum
        tracker.set_tags({"failure_reason": "interrupted"})
        _console(f"error: {exc}")
        if not isinstance(tracker, ProxyTracker):  # resuming finds the run through the store
            _console(
                "note: this run was not tracked, so nothing resumes it: the same command trains "
                "from the start (with tracking on, it resumes from this state)"
            )
    except (KeyboardInterrupt, Terminated) as exc:  # before the engine holds them: said
        by = signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM
        status, error, stopped_by = "KILLED", "interrupted", by
        tracker.set_tags({"failure_reason": "interrupted"})
        if result is None:
            _console(
                f"Interrupted by {signal.Signals(by).name} before training started: nothing "
                "was trained."
            )
    except NonFiniteLoss as exc:
        error = str(exc)
        tracker.set_tags({"failure_reason": "non_finite_loss", "failure_step": str(exc.step)})
        _console(f"error: {exc}")
    except FileWriteError as exc:  # a full disk, say: nothing a traceback would explain
        error = str(exc)
        tracker.set_tags({"failure_reason": error[:500]})
        _console(f"error: {exc}")
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        tb = traceback.format_exc()
        (out_dir / "traceback.txt").write_text(tb)
        _console(tb.rstrip())
        tracker.set_tags({"failure_reason": error[:500]})
        tracker.log_artifact(out_dir / "traceback.txt")
    finally:
        t_trained = time.perf_counter()
        held.start()
        if result is not None and result.late_signal is not None:
            held.pending.append(result.late_signal)
        if isinstance(tracker, ProxyTracker):
            for failure in _finish_run(tracker, status, result, out_dir):
                warn_lost(failure, stdout=True)

    if store is not None:
        run_id = store.run_id(run_id)
    outcome = JobOutcome(
        status,
        run_id,
        result.final_test_acc if result else None,
        error,
        stopped_by,
        tracking_problems=len(LOST.problems) - lost_before,
        device=device.type,
        num_threads=threads,
        data_root=str(Path(str(cfg.dataset.root)).resolve()),
    )
    outcome.write(out_dir)
    if status == "KILLED" and run_id and result is None:
        # Its id is what `cvsweep rerun`, `evaluate` and the UI take; said here too.
        saved = error != "interrupted" and not ctx.multirun  # a sweep says how it goes on
        how = "; the same command resumes it from the state saved" if saved else ""
        _console(f"mlflow run: {run_id} (KILLED{how})")
    elif status == "FAILED" and run_id:  # the run the error above belongs to, for the UI
        _console(f"mlflow run: {run_id} (FAILED)")
    elif status == "FINISHED" and result is None and run_id:  # a shape report, logged
        _console(f"mlflow run: {run_id}")
    t_end = time.perf_counter()
    if result is not None:
        earlier_s = float(resume_state["elapsed_s"]) if resume_state is not None else 0.0
        _console(f"job folder: {out_dir}")
        _console(f"checkpoint: {result.checkpoint_path}")
        _console(f"model: {result.model_path}")
        if run_id:
            _console(f"mlflow run: {run_id}")
        _console(
            f"final test accuracy: {100 * result.final_test_acc:.2f}%  "
            f"(best {100 * result.best_test_acc:.2f}%)  wall time: {t_end - t_start:.1f} s "
            f"(setup {t_train - t_start:.1f} s, training {t_trained - t_train:.1f} s of which "
            f"{result.train_time_s - earlier_s:.1f} s in epochs, finishing "
            f"{t_end - t_trained:.1f} s)"
            + (f"; {result.train_time_s:.1f} s in epochs over all attempts" if earlier_s else "")
        )
    return outcome


def _skipped_outcome(out_dir: Path, run_id: str, accuracy: float | None) -> JobOutcome:
    """A skipped job's record. Where the folder already holds the finished run's own files,
    what the record said of them (where and how it trained) is kept: the same command run
    again into a fixed hydra.run.dir must not turn its model into "an earlier job's"."""
    outcome = JobOutcome("SKIPPED", run_id, accuracy)
    if holds_run(out_dir, run_id):
        before = read_job_result(out_dir) or {}
        outcome.trained_here = True
        outcome.device, outcome.num_threads = before.get("device"), before.get("num_threads")
        outcome.data_root = before.get("data_root")
    return outcome


def _finished_run_files(found: dict[str, Any]) -> str:
    """Where the skipped job's result already is, and how to train it again anyway: run
    twice, `python train.py` would otherwise leave a user without a new model.pth or a why."""
    folder = found["finished"].get("output_dir")
    mine = folder is not None and holds_run(Path(folder), found["finished"]["run_id"])
    model = Path(folder) / MODEL_NAME if mine else None
    where = f"; its model: {model}" if model is not None and model.is_file() else ""
    return f" (tracking.skip_finished=false trains it again){where}"


def _finish_run(
    tracker: ProxyTracker, status: str, result: TrainResult | None, out_dir: Path
) -> list[str]:
    """Close the run; in a basic-launcher sweep without waiting (the next job overlaps it)."""
    final: dict[str, Any] = {}
    if result is not None:
        final = {
            "metrics": {
                "final_test_acc": result.final_test_acc,
                "best_test_acc": result.best_test_acc,
                "final_test_loss": result.final_test_loss,
                "final_train_loss": result.final_train_loss,
                "train_time_s": result.train_time_s,
            },
            "step": result.steps,
            "history": result.history,
            "curves_path": out_dir / "curves.png",
            # The last checkpoint was uploaded when it was written (_TrackedTrainer).
            "artifacts": [(result.model_path, None)],
        }
    return tracker.finish(status, wait=not tracker.proxy.defer_finish, **final)


def _log_run_setup(
    tracker: ProxyTracker,
    cfg: DictConfig,
    ctx: JobContext,
    chash: str,
    device: torch.device,
    threads: int,
    logged_params: set[str] | None,
) -> None:
    """Params, tags and the config files of a run; for a resumed run (`logged_params`: the
    keys the store has) only the params its first attempt could not write. MLflow refuses to
    change a param, and a resumed attempt may differ in ones that do not change results
    (`dataset.root`, `trainer.device`): those already there stay."""
    container = OmegaConf.to_container(cfg, resolve=True)
    params = flatten(container)
    for group in GROUPS:
        params[group] = ctx.choices.get(group, cfg[group].get("name"))
    if "experiment" in ctx.choices and ctx.choices["experiment"]:
        params["experiment"] = ctx.choices["experiment"]
    if cfg.schedule.phases:  # what trained, not settings the phases replace
        params["optimizer"] = optimizers_text(plan_phases(cfg))
        params["trainer.epochs"] = total_epochs(cfg)
    if logged_params is not None:
        params = {k: v for k, v in params.items() if k not in logged_params}
    if params:
        tracker.log_params(params)
    tags = {
        "overrides": " ".join(ctx.overrides),
        "config_hash": chash,
        "group_key": config_hash(cfg, without_seed=True),
        "command": ctx.command or reproduce_command(ctx.overrides),
        "job_num": str(ctx.job_num),
        "device": device_name(device),
        "num_threads": str(threads),
        **cpu_tags(device),
        "output_dir": str(ctx.output_dir),
        **owner_tags(os.getpid()),
        "mlflow.source.name": "train.py",
        **_git_info(Path(__file__).resolve().parents[2]),
        **ctx.extra_tags,
    }
    tracker.set_tags(tags)
    if ctx.config_dir is not None and ctx.config_dir.is_dir():
        tracker.log_artifacts(ctx.config_dir, "config")


@dataclass
class Prepared:
    data: data_mod.DeviceData | None  # None for trainer.shapes_only: nothing is trained
    model: torch.nn.Module
    report_md: Path
    report_json: Path


def _load_data(cfg: DictConfig, device: torch.device) -> data_mod.DeviceData:
    """The run's images on its device, fetched first where files are missing."""
    root, name = cfg.dataset.root, cfg.dataset.name
    missing = data_mod.missing_files(root, name)
    if missing:
        from .fetch import fetch

        data_mod.check_root_to_fetch_into(root, name)
        every = sum(len(stems) for stems in data_mod.SPLIT_FILES.values())
        lacks = "not found" if len(missing) == every else f"lacks {', '.join(missing)}"
        _console(f"dataset {name} under {root}: {lacks}; fetching it")
        fetch(name, root, log=_console)
    return data_mod.cached_device_data(
        root,
        name,
        float(cfg.dataset.mean),
        float(cfg.dataset.std),
        device,
        cfg.dataset.train_limit,
        cfg.dataset.test_limit,
    )


def _prepare(cfg: DictConfig, device: torch.device, out_dir: Path) -> Prepared:
    """Data, model and shape report: everything that can fail on bad input, before a run exists.

    The report is written, not printed: the job prints it once it knows it will train. A
    shapes-only job reads no data (the report needs none), so it works before any download.
    """
    seed_everything(int(cfg.seed))
    data = None if cfg.trainer.shapes_only else _load_data(cfg, device)
    model = build_model(cfg.model).to(device)
    report = shape_report(
        model,
        str(cfg.model.name),
        (int(cfg.model.in_channels), int(cfg.model.image_size), int(cfg.model.image_size)),
        int(cfg.trainer.report_batch_size),
    )
    md, js = out_dir / "shape_report.md", out_dir / "shape_report.json"
    md.write_text(report.to_markdown())
    js.write_text(report.to_json())
    return Prepared(data, model, md, js)


def _train(
    cfg: DictConfig,
    prepared: Prepared,
    device: torch.device,
    tracker: Any,
    out_dir: Path,
    resume_state: dict[str, Any] | None,
    from_folder: bool = False,
) -> TrainResult:
    tracker.log_artifact(prepared.report_md)
    tracker.log_artifact(prepared.report_json)
    data = prepared.data
    assert data is not None  # a shapes-only job never trains
    _console(
        f"training {cfg.model.name} on {cfg.dataset.name} ({len(data.train_y)} train / "
        f"{len(data.test_y)} test images) on {device_name(device)}, "
        f"optimizer {optimizers_text(plan_phases(cfg))}, augment {cfg.augment.name}, "
        f"schedule {cfg.schedule.name}, seed {cfg.seed}"
    )
    for note in size_notes(cfg, len(data.train_y), len(data.test_y)):
        _console(f"note: {note}")
    if str(cfg.trainer.cuda_graphs) == "on" and device.type != "cuda":
        _console(
            f"note: trainer.cuda_graphs=on: CUDA graphs need a CUDA device; on "
            f"{device.type} each step runs as it is (the same numbers, without the graph)"
        )
    trainer = _TrackedTrainer(
        cfg,
        data,
        prepared.model,
        tracker,
        out_dir,
        device,
        console=_console,
    )
    # A state from the run's job folder is newer than the store's checkpoint: uploaded once
    # its history's missing points have been sent.
    trainer.upload_resumed_state = from_folder
    return trainer.fit(resume=resume_state)


def size_notes(cfg: DictConfig, n_train: int, n_test: int) -> list[str]:
    """Settings the run cannot follow as given, said once where the training starts.

    The run goes on (each has one sensible reading), but a user comparing runs must know that
    the number they set is not the one used.
    """
    notes = []
    d, t = cfg.dataset, cfg.trainer
    for key, limit, n, split in (
        ("train_limit", d.train_limit, n_train, "training"),
        ("test_limit", d.test_limit, n_test, "test"),
    ):
        if limit is not None and int(limit) > n:
            notes.append(
                f"dataset.{key}={limit} is more than the {n:,} {split} images of "
                f"{d.name}: all {n:,} are used"
            )
    batch = int(t.batch_size)
    if batch > n_train:
        notes.append(
            f"trainer.batch_size={batch} is more than the {n_train:,} training images: each "
            f"step takes all {n_train:,} (one step per epoch)"
        )
    elif n_train % batch >= 0.1 * n_train:
        # Every epoch trains full batches of a fresh shuffle; the remainder is left out (other
        # images each epoch). Said only where that is a sizeable part of the set.
        used = n_train - n_train % batch
        notes.append(
            f"trainer.batch_size={batch} leaves {n_train % batch:,} of the {n_train:,} "
            f"training images out of each epoch: an epoch trains {n_train // batch} full "
            f"batch(es) ({used:,} images) of a fresh shuffle, so other images are left out each "
            "time"
        )
    if cfg.schedule.scheduler == "onecycle":
        steps_per_epoch = n_train // min(batch, n_train)
        pct_start = float(cfg.schedule.pct_start)
        for phase in plan_phases(cfg):
            total = phase.epochs * steps_per_epoch
            if total < 3:
                notes.append(
                    f"schedule onecycle needs at least 3 steps for its warm-up and decay; "
                    f"{total} here, so the lr stays at {phase.optimizer.lr} throughout"
                )
                break
            used = onecycle_pct(pct_start, total)
            if used != pct_start:
                notes.append(
                    f"schedule.pct_start={pct_start:g} leaves the "
                    f"{'warm-up' if pct_start * total < 1.5 else 'decay'} of onecycle without "
                    f"a step in {total} steps; {used:.3g} is used"
                )
                break
    a = cfg.augment
    if a.name == "none" and (float(a.flip_p) > 0 or float(a.degrees) > 0):
        notes.append(
            f"augment none with augment.flip_p={a.flip_p} augment.degrees={a.degrees}: the "
            "images are augmented as those values say (logged as augment=none); choose "
            "augment=flip, rotate or rot_flip to name what the run does"
        )
    # The reverse: a named augmentation whose own setting is off does not do what its name says.
    flips, rotates = float(a.flip_p) > 0, float(a.degrees) > 0
    does = {(True, True): "rot_flip", (True, False): "flip", (False, True): "rotate"}
    meant = {"flip": (True, False), "rotate": (False, True), "rot_flip": (True, True)}
    wanted = meant.get(str(a.name))
    if wanted and ((wanted[0] and not flips) or (wanted[1] and not rotates)):
        what = does.get((flips, rotates))
        notes.append(
            f"augment {a.name} with augment.flip_p={a.flip_p} augment.degrees={a.degrees}: "
            + (
                f"the images are augmented as augment={what} does"
                if what
                else "nothing is augmented"
            )
            + f" (logged as augment={a.name}); choose "
            + (f"augment={what}" if what else "augment=none")
            + " to name what the run does"
        )
    return notes
