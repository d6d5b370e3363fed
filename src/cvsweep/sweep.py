"""The Hydra callback that makes a multirun one MLflow parent run with a comparison report.

The parent run id reaches every job through the config: the callback appends
`tracking.parent_run_id=<id>` to the sweep's task overrides before the sweeper reads them, so it
works the same for the basic, joblib and submitit launchers (no environment variables, and not
MLFLOW_RUN_ID, which would make the children write into the parent).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from . import hydra_errors
from .config import ConfigError, validate
from .data import DataError, refuse_unusable_root
from .identity import RESULT_FILE, raw_overrides, read_job_result, run_name
from .model_source import CHECKPOINT_NAME, MODEL_NAME
from .store_proxy import (
    LOST,
    StoreProxy,
    discard_unused,
    replace_dead,
    shared_proxy,
    warn_lost,
)
from .tracking import (
    TrackingError,
    as_warning,
    orphan_note,
    owner_tags,
    probe_writable,
    resolve_uri,
)


def _cell_overrides(job_dir: Path) -> list[str] | None:
    """The overrides of the sweep's cell that ran in job_dir (Hydra's record of them)."""
    import yaml

    try:
        found = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return [str(o) for o in found] if isinstance(found, list) else None


def sweep_name(overrides: list[str]) -> str:
    """What a person sees first in the UI: the parent run says what was swept."""
    return "sweep: " + run_name(overrides)


def preset_sweep(config: DictConfig, overrides: list[str]) -> list[str]:
    """What a preset sweeps by itself (its hydra.sweeper.params with several values) and the
    command line leaves as it is: `experiment=optimizers` alone does not say it sweeps
    optimizer=sgd,adam, and the parent run's name must say what was swept."""
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    return [
        f"{key}={value}"
        for key, value in sweep_params(config).items()
        if key not in given and ("," in str(value) or "(" in str(value))
    ]


def _split_threads(cfg: DictConfig) -> None:
    """Parallel jobs on one machine split the cores instead of each taking all of them."""
    launcher = cfg.hydra.launcher.get("_target_", "")
    n_jobs = cfg.hydra.launcher.get("n_jobs", None) if "joblib" in launcher else None
    if "submitit" in launcher and "local" in launcher.lower():
        n_jobs = cfg.hydra.launcher.get("array_parallelism", None)
    if "joblib" in launcher and n_jobs is not None and int(n_jobs) == 0:
        print(
            "error: Invalid config value hydra.launcher.n_jobs=0: joblib runs n_jobs jobs at "
            "once (-1 for one per core); 0 would run none.",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(2)
    if n_jobs and int(n_jobs) > 1 and "CVSWEEP_NUM_THREADS" not in os.environ:
        os.environ["CVSWEEP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(n_jobs)))


def sweep_params(config: DictConfig) -> dict[str, Any]:
    """The sweep a config asks for (hydra.sweeper.params), as plain values."""
    params = config.hydra.sweeper.get("params") or {}
    if OmegaConf.is_config(params):
        params = OmegaConf.to_container(params, resolve=False)
    return dict(params)


def job_overrides(config: DictConfig, loader: Any) -> list[list[str]]:
    """Each job's overrides, expanded the way Hydra's basic sweeper will expand them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arguments = [f"{k}={v}" for k, v in sweep_params(config).items()]
    arguments += raw_overrides(config.hydra.overrides.task)
    # With the config loader, as the sweeper's parser has it: glob(*) over a group needs it.
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


@dataclass
class _CheckedJobs:
    """The jobs validate_jobs composed and checked, and from which sweep config.

    The sweeper in hydra_plugins/cvsweep_sweeper does not compose these jobs a second time.
    `added_keys`: the overrides the callback then adds to every job (plain strings, the parent
    run id and the store URI), recognised by key because Hydra hands them back re-escaped
    (`sqlite\\:///`).
    """

    config: DictConfig | None = None
    jobs: set[tuple[str, ...]] = field(default_factory=set)
    added_keys: set[str] = field(default_factory=set)
    folders: dict[str, int] = field(default_factory=dict)  # each job's folder, as named


_CHECKED = _CheckedJobs()


def checked_job(config: DictConfig, overrides: Sequence[str]) -> bool:
    """Has validate_jobs composed and checked this job of the sweep with this very config?"""
    if config is not _CHECKED.config:
        return False
    own = tuple(o for o in overrides if o.split("=", 1)[0] not in _CHECKED.added_keys)
    return own in _CHECKED.jobs


def check_job(job: DictConfig, data_here: bool = True) -> None:
    """A job's values, and where it runs on this machine its data root and CUDA device, checked
    before any work; raises ConfigError or DataError. `job` is the task's config, without the
    `hydra` node."""
    validate(job)
    if data_here and str(job.trainer.device) == "cuda":
        from .runtime import resolve_device  # imports torch: only for a job that asks for CUDA

        resolve_device("cuda")
    if data_here and not job.trainer.shapes_only:
        refuse_unusable_root(job.dataset.root, job.dataset.name)


def validate_jobs(config: DictConfig) -> int:
    """Check every job's values before the parent run exists, so a bad sweep leaves no runs.

    Each job is composed as Hydra's launcher will compose it (its config loader's
    `load_sweep_config`), so the check also covers what Hydra's own check of the batch would,
    bar the two plain-string overrides the callback adds afterwards.
    Returns how many jobs the sweep has (0 where the sweeper chooses them as it goes).
    """
    global _CHECKED
    _CHECKED = _CheckedJobs()
    if "BasicSweeper" not in str(config.hydra.sweeper.get("_target_", "")):
        return 0  # other sweepers choose jobs as they go; each job still validates itself
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    try:
        jobs = job_overrides(config, loader)
    except (HydraException, OmegaConfBaseException) as exc:
        _sweep_syntax_error(exc)
    except ValueError as exc:  # range(0,3,0): Python's range() refuses the step
        said = str(exc)
        if "must not be zero" in said:
            said = "range(start,stop,step) needs a step other than 0"
        print(f"error: Cannot expand the sweep: {said}.", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if not jobs:  # an empty range: a parent run and a report of nothing would follow
        swept = " ".join(raw_overrides(config.hydra.overrides.task))
        print(
            f"error: Cannot expand the sweep: {swept} gives no job (a range that is empty, "
            "such as range(0,0), has no values); give each swept key at least one value.",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(2)
    if len(jobs) >= MANY_JOBS:
        print(
            f"checking the config of each of the {len(jobs)} jobs before the sweep starts "
            f"(Ctrl-C stops)",
            flush=True,
        )
    folders: dict[str, int] = {}
    nested: list[tuple[str, list[str]]] = []  # jobs whose preset sweeps itself
    own_sweep = sweep_params(config)
    # Jobs submitted to a cluster read their data there: a root is checked only where they run.
    here = "slurm" not in str(config.hydra.launcher.get("_target_", "")).lower()
    for i, overrides in enumerate(jobs):
        _stop_on_held_ctrl_c()
        try:
            job = loader.load_sweep_config(master_config=config, sweep_overrides=list(overrides))
            _claim_job_folder(folders, _job_subdir(job, i), i)
            if sweep_params(job) != own_sweep:
                nested.append((str(job.hydra.runtime.choices.get("experiment")), list(overrides)))
            if str(job.hydra.sweep.dir) != str(config.hydra.sweep.dir):
                _refuse_sweep_dir_per_job(config, job, i, overrides)
            with read_write(job), open_dict(job):
                del job["hydra"]  # as Hydra's run_job does: the task sees the rest
            check_job(job, data_here=here)
        except (ConfigError, DataError, HydraException, OmegaConfBaseException, TypeError) as exc:
            said = isinstance(exc, ConfigError | DataError)
            task = raw_overrides(config.hydra.overrides.task)  # as typed: `=16,32`, not `=16`
            listed = None if said else hydra_errors.list_item([*task, *overrides])
            if isinstance(exc, TypeError) and not listed:
                raise
            why = str(exc) if said else listed or hydra_errors.explain(exc)
            print(f"error: job #{i} ({' '.join(overrides)}): {why}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
    if nested:
        _refuse_nested_sweeps(config, nested)
    _CHECKED.config, _CHECKED.jobs = config, {tuple(job) for job in jobs}
    _CHECKED.folders = folders
    return len(jobs)


def _refuse_sweep_dir_per_job(
    config: DictConfig, job: DictConfig, num: int, overrides: Sequence[str]
) -> NoReturn:
    """hydra.sweep.dir built from a swept value (`ms/lr${optimizer.lr}`) gives each job a
    sweep folder of its own, where the sweep finds neither its jobs' results nor their exit."""
    given = OmegaConf.to_container(config.hydra.sweep, resolve=False)["dir"]
    print(
        f"error: hydra.sweep.dir={given} gives the jobs folders of their own (job #{num}, "
        f"{' '.join(overrides)}: {job.hydra.sweep.dir}), but a sweep has one folder, where "
        "its report and the result of each job are gathered. Put what tells the jobs apart in "
        "hydra.sweep.subdir (e.g. hydra.sweep.subdir=${hydra.job.override_dirname}).",
        file=sys.stderr,
        flush=True,
    )
    raise SystemExit(2)


def _refuse_nested_sweeps(config: DictConfig, nested: list[tuple[str, list[str]]]) -> NoReturn:
    """A swept preset (`-m experiment=a,b`) that sweeps itself: Hydra expands the sweep before
    it reads the presets, so their own sweeps would never run, and each job would train once at
    the defaults under its preset's name."""
    names = list(dict.fromkeys(name for name, _ in nested))
    commands = list(
        dict.fromkeys(
            "python train.py " + " ".join(shlex.quote(o) for o in overrides)
            for _, overrides in nested
        )
    )
    swept = " ".join(raw_overrides(config.hydra.overrides.task))
    print(
        f"error: Cannot sweep {swept}: "
        + (
            f"the presets {', '.join(names[:-1])} and {names[-1]} each sweep themselves"
            if len(names) > 1
            else f"the preset {names[0]} sweeps itself"
        )
        + " (hydra.sweeper.params), and a sweep over presets cannot run their sweeps: Hydra "
        "expands it before it reads them, so each job would train once, at the defaults, under "
        "its preset's name. Run each such preset as its own command: "
        + "; ".join(f"`{c}`" for c in commands[:6])
        + (f" (and {len(commands) - 6} more)" if len(commands) > 6 else "")
        + ". Nothing was run or logged.",
        file=sys.stderr,
        flush=True,
    )
    raise SystemExit(2)


def _job_subdir(job: DictConfig, num: int) -> str | None:
    """The job's folder under the sweep folder, as the launcher will name it (job.num set)."""
    try:
        with read_write(job), open_dict(job):
            job.hydra.job.num = job.hydra.job.id = num
        return str(job.hydra.sweep.subdir)
    except OmegaConfBaseException:
        return None  # the launcher names it from what only it knows


def _claim_job_folder(folders: dict[str, int], subdir: str | None, num: int) -> None:
    """Two jobs in one folder: the second would overwrite the first's model and checkpoint,
    and the sweep's summary would count one job where two ran."""
    if subdir is None:
        return
    if subdir in folders:
        raise ConfigError(
            f"jobs #{folders[subdir]} and #{num} would both write to the job folder {subdir!r} "
            "(hydra.sweep.subdir), the second over the first's model and checkpoint; make it "
            "differ between jobs, e.g. ${hydra.job.num} (the default) or "
            "${hydra.job.override_dirname}"
        )
    folders[subdir] = num


MANY_JOBS = 100  # checking a job's config takes about 0.1 s: say so before a long wait


def _sweep_syntax_error(exc: BaseException) -> NoReturn:
    """A sweep value the basic sweeper cannot expand (`interval(...)`), said in one paragraph.

    Raised inside on_multirun_start, Hydra would only warn and then fail in its sweeper with a
    traceback; SystemExit stops the command before any run exists.
    """
    why = hydra_errors.one_paragraph(exc).rstrip(".")
    if "INTERVAL_SWEEP" in why:
        why = (
            "interval(low,high) is a range to sample from, which only sampling sweepers (Optuna, "
            "Ax, ...) take; the default sweeper runs the values it is given: list them "
            "(optimizer.lr=0.001,0.01,0.1) or use range(start,stop,step)"
        )
    print(f"error: Cannot expand the sweep: {why}.", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _stop_on_held_ctrl_c() -> None:
    """Ctrl-C stays held until the first job has loaded torch; checking a long sweep's jobs
    comes first, and a press meanwhile stops the command here, not after the last check."""
    from . import cli

    held = getattr(cli, "_HELD_CTRL_C", None)
    if held is not None and held.arrived:
        cli.ctrl_c_now_stops()


def _check_cluster(config: DictConfig, launcher: str) -> None:
    """A SLURM launcher on a machine without SLURM: named before the sweep's parent run exists,
    instead of a FAILED parent and advice to change the launcher's settings."""
    target = str(config.hydra.launcher.get("_target_", ""))
    if "SlurmLauncher" not in target or shutil.which("srun") or shutil.which("sbatch"):
        return
    print(
        f"error: hydra/launcher={launcher} submits the jobs to a SLURM cluster, and this "
        "machine has none (no srun or sbatch on PATH). Run the command on the cluster's login "
        "node, or run the jobs here with hydra/launcher=submitit_local or hydra/launcher=joblib.",
        file=sys.stderr,
        flush=True,
    )
    raise SystemExit(2)


def _reject_misread_groups(config: DictConfig) -> None:
    """`augment=[flip,rotate]` composes silently as the last option, a sweep being meant;
    `dataset.name=fashion_mnist` trains MNIST's settings on it, logged as mnist."""
    overrides = raw_overrides(config.hydra.overrides.task)
    said = hydra_errors.list_of_options(overrides) or hydra_errors.renamed_group(
        overrides, config.hydra.runtime.get("choices")
    )
    if said:
        print(f"error: {said}", file=sys.stderr, flush=True)
        raise SystemExit(2)


_Hook = TypeVar("_Hook", bound=Any)


def _not_swallowed(hook: _Hook) -> _Hook:
    """Hydra turns an exception in a callback into a warning and goes on: a sweep whose set-up
    failed half-way would run without its parent run and then say it was not tracked. An
    unexpected error stops the command instead (exit 1), with its traceback."""

    @functools.wraps(hook)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return hook(*args, **kwargs)
        except Exception:
            import traceback

            traceback.print_exc()
            raise SystemExit(1) from None

    return guarded  # type: ignore[return-value]


def _runs_jobs_here(config: DictConfig) -> bool:
    """Does the launching process run the jobs itself (Hydra's basic launcher)?"""
    return "BasicLauncher" in str(config.hydra.launcher.get("_target_", ""))


def claim_launch_folder(config: DictConfig, kind: str) -> Path:
    """The folder of this run (`kind` "run") or sweep ("sweep"), made now where its name
    comes from the launch time, as Hydra's default `outputs/<date>/<time>` does.

    Two launches in the same second would otherwise share that folder, and each would log the
    other's model.pth and config to its own run. Making the folder is atomic: the launch that
    finds it made gets `<time>_2` (`_3`, ...), set in the config (and, for a sweep, in the
    overrides its jobs are composed from). A folder named outright is left to the user, who
    may well mean to use it again.
    """
    node = config.hydra[kind]
    path = Path(str(node.dir)).resolve()
    named = OmegaConf.to_container(node, resolve=False).get("dir")
    if "${now:" not in str(named):
        return path
    for n in range(1, 1000):
        claimed = path if n == 1 else path.with_name(f"{path.name}_{n}")
        try:
            claimed.parent.mkdir(parents=True, exist_ok=True)
            claimed.mkdir()
            break
        except FileExistsError:
            continue
        except OSError:
            return path  # check_output_dir says why it cannot be written
    else:
        return path
    if claimed != path:
        with read_write(config), open_dict(config):
            node.dir = str(claimed)
            if kind == "sweep":  # quoted: Hydra's override grammar escapes only quotes there
                quoted = str(claimed).replace("'", "\\'")
                config.hydra.overrides.hydra.append(f"hydra.sweep.dir='{quoted}'")
    return claimed


def check_output_dir(path: Path, key: str) -> None:
    """Fail with one clear paragraph, before any run exists, when outputs cannot be written."""
    try:
        probe_writable(path)
    except OSError as exc:
        print(
            f"error: cannot write the output folder {path} ({exc.strerror or exc}). Set "
            f"{key}=<a folder you can write> or start from such a folder.",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(2) from None


def _refuse_other_config_folder(config: DictConfig) -> None:
    """A job's config is read back from `<job folder>/.hydra`: the run logs it from there (what
    `cvsweep rerun` reads), and `evaluate`, `load_model`, a sweep's report and the resume of a
    stopped job read it there. hydra.output_subdir=null writes none, another name puts it where
    none of them looks: refused before anything runs, not found out at the first rerun."""
    subdir = config.hydra.get("output_subdir")
    if subdir == ".hydra":
        return
    said = "null (no config folder at all)" if subdir is None else f"{subdir}"
    print(
        f"error: hydra.output_subdir={said}: cvsweep keeps each job's config in Hydra's default "
        "folder, <job folder>/.hydra, and reads it back there: the run logs it to MLflow from "
        "there (what `cvsweep rerun` trains from), and `cvsweep evaluate`, `load_model` and the "
        "resume of a stopped job read it there. Leave hydra.output_subdir at .hydra.",
        file=sys.stderr,
        flush=True,
    )
    raise SystemExit(2)


KEPT_JOB_FILES = (MODEL_NAME, CHECKPOINT_NAME, RESULT_FILE)  # what a job that ran leaves


def _refuse_over_kept_job(config: DictConfig, run_dir: Path) -> None:
    """A rejected single run into a folder that holds an earlier job's results: refused here,
    before Hydra writes the run's `.hydra/` and `train.log` there.

    A fixed `hydra.run.dir` used again would otherwise have its config replaced by one that
    never trained, and `evaluate` or `load_model` would then score the earlier model as that
    config describes (another dataset, another model). A run that does train there replaces
    the folder's files as a whole, as Hydra does; a refused one now leaves them as they were.
    Elsewhere the check stays in the job, whose folder keeps the refused config and its error.
    """
    if not any((run_dir / name).exists() for name in KEPT_JOB_FILES):
        return
    job = config.copy()
    try:
        with read_write(job), open_dict(job):
            del job["hydra"]  # as Hydra's run_job does: the task sees the rest
        check_job(job)
    except (ConfigError, DataError) as exc:
        print(
            f"error: {exc} Nothing in {run_dir} was changed: it keeps its earlier job's files.",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(2) from None


def _check_job_dirs(config: DictConfig, sweep_dir: Path, n_jobs: int) -> None:
    """A file where a job's folder goes would stop Hydra's launcher with a traceback once the
    sweep's parent run exists; say so before anything starts. The folders are those
    validate_jobs named (any hydra.sweep.subdir); the numbered ones where it named none."""
    folders = {sub: num for sub, num in _CHECKED.folders.items() if _CHECKED.config is config}
    if not folders:
        subdir = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")
        if subdir != "${hydra.job.num}":
            return
        folders = {str(num): num for num in range(n_jobs)}
    for sub, num in folders.items():
        path = sweep_dir / sub
        if path.exists() and not path.is_dir():
            print(
                f"error: cannot write the output folder of job #{num}: {path} is a file, not a "
                "folder. Move it aside, or set hydra.sweep.dir=<another folder>.",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(2)


_ACTIVE: MlflowSweepCallback | None = None  # the sweep this process launched, until its end
# Did Hydra compose the config? Its callbacks start only then; an exit before that is a
# command line Hydra rejected (an unknown option or key, a value of the wrong type).
COMPOSED = False


def config_composed() -> bool:
    return COMPOSED


INTERRUPT_CODES = {128 + signal.SIGINT: "Ctrl-C", 128 + signal.SIGTERM: "SIGTERM"}


STOP_FILE = ".cvsweep-stop"  # in the sweep folder: no job of a stopped sweep starts
NOT_STARTED = "not started: the sweep was stopped"


def stop_requested(job_dir: Path) -> bool:
    """Was this job's sweep stopped before the job began (a parallel launcher's queue)?

    The job's folder may lie deeper than one level in the sweep folder (a hydra.sweep.subdir
    with a `/`, or override_dirname's values with one): the folders above it are looked in, up
    to the sweep folder (the one with Hydra's multirun.yaml)."""
    for folder in job_dir.parents:
        if (folder / STOP_FILE).exists():
            return True
        if (folder / "multirun.yaml").exists():
            return False
    return False


def job_result_files(sweep_dir: Path) -> list[Path]:
    """The job result files under a sweep folder, at whatever depth hydra.sweep.subdir put
    its jobs' folders: `*/` alone missed them, and with them a failed job's exit code."""
    return files_named(sweep_dir, RESULT_FILE)


def files_named(folder: Path, name: str) -> list[Path]:
    """Every file called name under folder, sorted. os.walk, not Path.rglob: a job's tracking
    process removes each uploaded checkpoint's snapshot folder while the sweep may be walking
    its folder, and rglob (Python 3.11) raises FileNotFoundError for a folder gone mid-walk."""
    found = []
    for here, dirs, files in os.walk(folder):  # a folder gone mid-walk is passed over
        dirs[:] = [d for d in dirs if not d.startswith((".hydra", ".checkpoint-epoch"))]
        if name in files:
            found.append(Path(here) / name)
    return sorted(found)


def _children(pid: int) -> list[int]:
    """Processes whose parent is pid (Linux /proc; none elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def jobs_run_here() -> bool:
    """Does this process run the jobs of a sweep it launched (Hydra's basic launcher)?"""
    return _ACTIVE is not None and _ACTIVE.runs_here and not _ACTIVE.ended


def stop_sweep(code: object) -> None:
    """Record a sweep that ends before its last job (Ctrl-C, SIGTERM, an error) as stopped."""
    if _ACTIVE is not None and not _ACTIVE.ended:
        _ACTIVE.stopped(code)


# What joblib's loky and concurrent.futures raise when a worker process dies under them.
WORKER_DIED = ("TerminatedWorkerError", "BrokenProcessPool", "BrokenExecutor")


def launcher_failed(exc: Exception, launcher: str) -> NoReturn:
    """The sweep's launcher raised (a setting it refuses, a worker that died, a cluster it cannot
    reach): say so in one paragraph, and give the reason to the parent run, then exit 1."""
    reason = f"the launcher ({launcher}) failed: {type(exc).__name__}: {exc}".strip()
    if type(exc).__name__ in WORKER_DIED:
        # Not a setting to fix: a worker process was killed (the kernel's out-of-memory
        # killer, a signal, a crash), and the launcher then stops every other worker too.
        advice = (
            "A worker process died (killed by the system, e.g. out of memory, or by a signal), "
            "and the launcher stopped the other workers with it."
        )
    else:
        advice = (
            f"Its settings are under hydra.launcher (`python train.py --cfg hydra -p "
            f"hydra.launcher {launcher}` shows them)."
        )
    said = reason if reason.endswith(("?", "!")) else reason.rstrip(".") + "."
    print(f"error: {said} {advice}", file=sys.stderr, flush=True)
    if _ACTIVE is not None:
        _ACTIVE.failure_reason = reason[:500]
        _ACTIVE.worker_died = type(exc).__name__ in WORKER_DIED
    raise SystemExit(1)


def _signature(path: Path) -> tuple[int, int, int]:
    """What changes when a file is written again (none of it when it is not)."""
    try:
        st = path.stat()
    except OSError:
        return (0, 0, 0)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        # Plain values only: launchers such as joblib pickle the callbacks into their workers.
        self.parent_id: str | None = None
        self.uri: str = ""
        self.sweep_dir: Path | None = None
        self.runs_here = False
        self.ended = False
        self.reported = False
        self.n_jobs = 0
        self.interrupted: int | None = None  # exit code of a stop a parallel sweep waits out
        self.worker_died = False  # the launcher failed because one of its workers was killed
        # Result files an earlier sweep left in a reused sweep folder, as they were at the
        # start: every job of this sweep (skipped ones too) writes its own, so these are not it.
        self.earlier_results: dict[str, tuple[int, int, int]] = {}
        self.failure_reason: str | None = None  # the launcher's own error, when it raised one

    @_not_swallowed
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        global COMPOSED
        COMPOSED = True
        hydra_errors.composed()
        _reject_misread_groups(config)
        _refuse_other_config_folder(config)
        run_dir = claim_launch_folder(config, "run")
        check_output_dir(run_dir, "hydra.run.dir")
        _refuse_over_kept_job(config, run_dir)

    @_not_swallowed
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _ACTIVE, COMPOSED
        COMPOSED = True
        hydra_errors.composed()
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        _reject_misread_groups(config)
        _refuse_other_config_folder(config)
        _split_threads(config)
        self.n_jobs = validate_jobs(config)
        _check_cluster(config, str(config.hydra.runtime.choices.get("hydra/launcher")))
        self.sweep_dir = claim_launch_folder(config, "sweep")
        check_output_dir(self.sweep_dir, "hydra.sweep.dir")
        _check_job_dirs(config, self.sweep_dir, self.n_jobs)
        # A stop of an earlier sweep in this folder must not stop this one's jobs.
        (self.sweep_dir / STOP_FILE).unlink(missing_ok=True)
        self.earlier_results = {
            str(path): _signature(path) for path in job_result_files(self.sweep_dir)
        }
        _ACTIVE, self.runs_here, self.ended = self, _runs_jobs_here(config), False
        if not self.runs_here:
            from .cli import ctrl_c_now_stops

            ctrl_c_now_stops()  # a Ctrl-C held while modules loaded; then this handler's
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, self._wait_for_workers)
        if not config.tracking.enabled:
            discard_unused()
            return
        LOST.required = LOST.required or bool(config.tracking.required)
        overrides = raw_overrides(config.hydra.overrides.task)
        swept = [*overrides, *preset_sweep(config, overrides)]
        command = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
        experiment = str(config.tracking.experiment)
        tags = {
            "cvsweep.sweep": "true",
            # Like a job's: a later launch marks the parent KILLED if this process dies.
            **owner_tags(os.getpid()),
            "sweep_dir": str(self.sweep_dir),
            "command": command,
            "overrides": " ".join(overrides),
        }

        def open_parent(proxy: StoreProxy) -> str:
            """The experiment (and the store) first, orphans marked, then the parent run."""
            opened = proxy.request("open_job", self.uri, experiment, None)
            parent = proxy.request(
                "create_run", self.uri, None, sweep_name(swept), tags, experiment=experiment
            )
            if self.runs_here:
                # The jobs will run in this process: do the first job's one-time work while the
                # store opens (not for shape reports, which train nothing), and let each job's
                # last uploads overlap the next job.
                proxy.defer_finish = True
                if not config.trainer.shapes_only:
                    from .runtime import preload_for_training

                    preload_for_training(str(config.trainer.device))
            for orphan in (opened.result() or {}).get("orphans") or []:
                print(orphan_note(orphan), flush=True)
            return str(parent.result())

        try:
            self.uri = resolve_uri(config.tracking.uri, Path.cwd())
            proxy = shared_proxy()
            try:
                self.parent_id = open_parent(proxy)
            except TrackingError:
                if not proxy.gone:
                    raise  # the store's own answer
                self.parent_id = open_parent(replace_dead(proxy, "the sweep"))
        except TrackingError as exc:
            if config.tracking.required:
                print(f"error: {exc}", file=sys.stderr, flush=True)
                raise SystemExit(2) from None
            print(f"warning: {as_warning(exc)} Sweeping without tracking.", flush=True)
            return
        added = [f"tracking.parent_run_id={self.parent_id}"]
        # Make the store URI absolute for every job, wherever the launcher runs it.
        if not any(o.startswith("tracking.uri=") for o in overrides):
            added.append(f"tracking.uri={self.uri}")
        with open_dict(config):
            config.hydra.overrides.task.extend(added)
        _CHECKED.added_keys.update(o.split("=", 1)[0] for o in added)
        print(f"sweep parent run: {self.parent_id} ({sweep_name(swept)})", flush=True)

    def _wait_for_workers(self, signum: int, _frame: Any) -> None:
        """Ctrl-C or SIGTERM while a parallel launcher's workers train: let them save first.

        Stopping the launcher at once would kill its workers half-way through saving their
        state. Instead no queued job starts (the stop file), the running ones stop at their
        next step as a terminal's Ctrl-C reaches them too (SIGTERM is passed on to them), and
        the sweep ends as stopped once they have returned. A second Ctrl-C stops at once.
        """
        if self.interrupted is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        first = self.interrupted is None
        self.interrupted = 128 + signum
        if self.sweep_dir is not None:
            with contextlib.suppress(OSError):
                (self.sweep_dir / STOP_FILE).touch()
        if signum == signal.SIGTERM:
            for pid in _children(os.getpid()):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
        if first:
            print(
                "stopping: the running jobs save their state and no further job starts "
                "(Ctrl-C again to stop at once)",
                file=sys.stderr,
                flush=True,
            )

    @_not_swallowed
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.interrupted is not None:
            raise SystemExit(self.interrupted)  # hydra_main records the sweep as stopped
        results = self._job_results()
        failed = [r for r in results if r.get("status") in ("FAILED", "KILLED")]
        for r in results:
            # Jobs that ran in other processes warned there (another log, with submitit);
            # said again here, they count for this process's exit code.
            here = r.get("pid") == os.getpid() and r.get("host") == socket.gethostname()
            if r.get("tracking_problems") and not here:
                warn_lost(
                    f"run {r.get('run_id')}: {r['tracking_problems']} writes not made, "
                    "see its job's log"
                )
        t_jobs = time.perf_counter()
        if self.parent_id is not None:
            self._report(results)
        else:
            trained = self.sweep_dir is not None and bool(files_named(self.sweep_dir, "model.pth"))
            holds = "its model and checkpoint" if trained else "its shape report and log"
            print(
                "note: no comparison report: it is built from the tracking store's runs, and "
                f"this sweep tracked none; each job's folder holds {holds}",
                flush=True,
            )
        self.reported = True
        from . import cli

        if cli.STARTED is not None:
            now = time.perf_counter()
            print(
                f"sweep: {len(results)} jobs ended {t_jobs - cli.STARTED:.1f} s after launch; "
                f"report {now - t_jobs:.1f} s",
                flush=True,
            )
        self.ended = True
        if failed:
            print(
                f"error: {len(failed)} of {len(results)} jobs did not finish "
                f"({', '.join(r.get('status', '?') for r in failed)}); see the report above "
                "and each job's folder.",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(1)

    def stopped(self, code: object) -> None:
        """The sweep ends early: report the jobs that ran, and say how to go on."""
        self.ended = True
        how = INTERRUPT_CODES.get(code) if isinstance(code, int) else None
        if how is None and self.parent_id is None:
            return  # an error before any job ran; its own message says what to fix
        results = [r for r in self._job_results() if r.get("error") != NOT_STARTED]
        if self.parent_id is not None:
            if not self.reported and results:  # a report of no runs would say nothing
                self._report(results)
            proxy = shared_proxy()
            with contextlib.suppress(TrackingError):
                if how is not None:
                    proxy.post("update_status", self.uri, self.parent_id, "KILLED")
                    proxy.post("tags", self.uri, self.parent_id, {"failure_reason": "interrupted"})
                else:  # an error stopped the launcher: the sweep did not run as asked
                    proxy.post("update_status", self.uri, self.parent_id, "FAILED")
                    reason = self.failure_reason or (
                        f"the sweep stopped early with exit code {code} (an error outside its jobs)"
                    )
                    proxy.post("tags", self.uri, self.parent_id, {"failure_reason": reason})
        total = f" of {self.n_jobs}" if self.n_jobs else ""
        if self.parent_id is None:  # nothing in a store to skip or resume from
            then = (
                "This sweep was not tracked, so nothing is skipped or resumed: the same command "
                "trains every job from the start."
            )
        elif how or self.worker_died:
            then = (
                "Run the same command again to go on: finished jobs are skipped and "
                "interrupted ones resume from their last checkpoint."
            )
        else:
            then = "The messages above say why."
        # A job that the stop interrupted is neither done nor still to do: say so apart.
        cut = sum(1 for r in results if r.get("status") == "KILLED")
        during = f", {cut} interrupted" if cut else ""
        print(
            f"error: the sweep was stopped ({how or f'exit code {code}'}) with "
            f"{len(results) - cut}{total} jobs done{during}. {then}",
            file=sys.stderr,
            flush=True,
        )

    def _job_results(self) -> list[dict[str, Any]]:
        if self.sweep_dir is None or not self.sweep_dir.is_dir():
            return []
        found = []
        for path in job_result_files(self.sweep_dir):
            if self.earlier_results.get(str(path)) == _signature(path):
                continue  # an earlier sweep's job that this one did not run
            result = read_job_result(path.parent)
            if result is None:
                continue
            result["cell"] = _cell_overrides(path.parent)
            found.append(result)
        return found

    def _report(self, results: list[dict[str, Any]]) -> None:
        """The comparison report, built in the tracking process after the jobs' last writes."""
        assert self.sweep_dir is not None
        proxy = shared_proxy()
        try:
            text = proxy.call(
                "sweep_report", self.uri, self.parent_id, str(self.sweep_dir), results
            )
            print(text, flush=True)
            print(f"comparison report: {self.sweep_dir / 'comparison.md'}", flush=True)
        except TrackingError as exc:
            warn_lost(f"the comparison report could not be made: {exc}", stdout=True)
        try:
            failures = proxy.failures()
        except TrackingError as exc:
            failures = [str(exc)]
        for failure in failures:
            warn_lost(failure)
