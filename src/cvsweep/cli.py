"""Command line: the Hydra training entrypoint and the `cvsweep` helper commands."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shlex
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .signals import HeldSignals, Terminated, interrupt_behind

if TYPE_CHECKING:  # the cvsweep commands load nothing heavy before Ctrl-C is theirs to catch
    from omegaconf import DictConfig


def conf_dir() -> Path:
    """conf/ of the project: $CVSWEEP_CONF, the source checkout's, or ./conf."""
    env = os.environ.get("CVSWEEP_CONF")
    if env:
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[2] / "conf"
    if (checkout / "train.yaml").is_file():
        return checkout
    return (Path.cwd() / "conf").resolve()


def _context_from_hydra() -> Any:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .identity import raw_overrides
    from .job import JobContext

    hc = HydraConfig.get()
    output_dir = Path(hc.runtime.output_dir)
    overrides = raw_overrides(hc.overrides.task)
    command = " ".join(
        shlex.quote(a)
        for a in ["python", "train.py", *_config_flags(hc), *_user_overrides(overrides)]
    )
    return JobContext(
        output_dir=output_dir,
        overrides=overrides,
        choices={k: str(v) for k, v in hc.runtime.choices.items() if v is not None},
        job_num=int(hc.job.num) if hc.mode == RunMode.MULTIRUN else 0,
        multirun=hc.mode == RunMode.MULTIRUN,
        config_dir=output_dir / hc.output_subdir if hc.output_subdir else None,
        command=command,
        launch_dir=Path(hc.runtime.cwd),
    )


def _config_flags(hc: Any) -> list[str]:
    """`--config-dir` and `--config-name` as the command gave them: without them its logged
    command would compose another config (an option of the user's folder unknown, another
    file's settings left out)."""
    flags = []
    for source in hc.runtime.config_sources:
        if source.get("provider") == "command-line" and source.get("schema") == "file":
            flags += ["--config-dir", str(source.get("path"))]
    if hc.job.config_name and hc.job.config_name != "train":
        flags += ["--config-name", str(hc.job.config_name)]
    return flags


def _console_prefix(ctx: Any) -> str:
    """`[#N] ` for a job of a sweep whose jobs print to one console at once (joblib's workers
    share the launching terminal), so that each line says whose it is; "" otherwise."""
    from hydra.core.hydra_config import HydraConfig

    if not ctx.multirun:
        return ""
    target = str(HydraConfig.get().launcher.get("_target_", ""))
    return f"[#{ctx.job_num}] " if "JoblibLauncher" in target else ""


def _data_root_from_launch_folder(cfg: DictConfig) -> None:
    """A relative dataset.root (the default `data`) names a folder where the command was
    launched, as a relative tracking.uri does: with hydra.job.chdir=true the job runs in its
    own folder, where it would find no data and download a copy into each job's folder."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import read_write

    hc = HydraConfig.get()
    root = Path(str(cfg.dataset.root))
    if not hc.job.chdir or root.is_absolute():
        return
    with read_write(cfg):
        cfg.dataset.root = str(Path(hc.runtime.cwd) / root)


def _user_overrides(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.startswith("tracking.parent_run_id=")]


def train_task(cfg: DictConfig) -> float | None:
    """Hydra's task function: run the job and turn outcomes into exit codes."""
    from . import hydra_errors

    hydra_errors.composed()  # also where no callback said so (Hydra's --experimental-rerun)
    _data_root_from_launch_folder(cfg)
    from . import store_proxy

    if cfg.tracking.enabled:
        # Started (if not yet) before torch is imported: MLflow loads on another core meanwhile.
        store_proxy.shared_proxy()
    else:
        store_proxy.discard_unused()
    from .joblog import console_in_job_log
    from .user_errors import ERRORS_FOR_USER, print_user_error

    _refuse_single_run(cfg)
    from .job import JobOutcome, run_job

    ctrl_c_now_stops()
    ctx = _context_from_hydra()
    if ctx.multirun:
        from .sweep import NOT_STARTED, stop_requested

        if stop_requested(ctx.output_dir):
            JobOutcome("KILLED", None, error=NOT_STARTED).write(ctx.output_dir)
            return None
    prefix = _console_prefix(ctx)
    with console_in_job_log(Path(ctx.output_dir), prefix) as log_line:
        try:
            outcome = run_job(cfg, ctx)
        except ERRORS_FOR_USER as exc:
            print_user_error(exc, prefix)
            log_line(f"error: {exc}")
            if ctx.multirun:
                JobOutcome("FAILED", None, error=str(exc)).write(ctx.output_dir)
                return None
            raise SystemExit(2) from None
    if outcome.status == "KILLED":
        from .sweep import jobs_run_here

        if not ctx.multirun or jobs_run_here():
            # Ctrl-C or SIGTERM stops the whole command, a sweep included: its callback
            # records the sweep as stopped on the way out (see hydra_main).
            raise SystemExit(outcome.exit_code)
    if outcome.status == "FAILED" and not ctx.multirun:
        raise SystemExit(1)
    return outcome.final_test_acc


def _refuse_single_run(cfg: DictConfig) -> None:
    """A single run's config and data root, checked before torch loads: a mistyped value is
    named in half a second instead of after two seconds of imports. (A sweep checks all its
    jobs this way before the first starts; the job repeats the check, which costs nothing.)"""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .joblog import console_in_job_log
    from .sweep import check_job
    from .user_errors import ERRORS_FOR_USER, print_user_error

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return
    try:
        check_job(cfg)
    except ERRORS_FOR_USER as exc:
        with console_in_job_log(Path(hc.runtime.output_dir)) as log_line:
            print_user_error(exc)
            log_line(f"error: {exc}")
        raise SystemExit(2) from None


STARTED: float | None = None  # perf_counter() when hydra_main began, for the sweep's timing


class ReaderSafeStdout:
    """stdout that outlives its reader, as in `python train.py | head`.

    When the reader goes away, Python raises BrokenPipeError at the next print: mid-training
    that would fail the run with a traceback nobody asked for. Instead the rest of the output
    goes to /dev/null and the command goes on: the run, its files and its tracking complete.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._discard()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._discard()

    def _discard(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_stdout() -> None:
    if not isinstance(sys.stdout, ReaderSafeStdout) and sys.stdout is not None:
        sys.stdout = ReaderSafeStdout(sys.stdout)  # type: ignore[assignment]


_HELD_CTRL_C: HeldSignals | None = None  # Ctrl-C held while train.py loaded modules


def ctrl_c_now_stops() -> None:
    """The modules are loaded: Ctrl-C stops the command again, and one pressed meanwhile does."""
    global _HELD_CTRL_C
    held, _HELD_CTRL_C = _HELD_CTRL_C, None
    if held is None:
        return
    held.release()
    if held.arrived:
        print("Interrupted by SIGINT while starting: nothing was trained.", flush=True)
        raise SystemExit(128 + signal.SIGINT)


def hydra_main(held_ctrl_c: HeldSignals | None = None) -> None:
    global STARTED, _HELD_CTRL_C
    import time

    STARTED = time.perf_counter()
    _HELD_CTRL_C = held_ctrl_c
    guard_stdout()
    # SIGTERM outside training (set-up, between a sweep's jobs, its report) ends the process
    # through the same path as an error, so a sweep is still recorded as stopped; inside
    # training the engine catches it first and saves the exact state.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    from .store_proxy import start_early

    start_early(sys.argv[1:])
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .config import one_paragraph, register_schemas

    register_schemas()
    main = hydra.main(config_path=str(conf_dir()), config_name="train", version_base="1.3")(
        train_task
    )
    from . import hydra_errors
    from .sweep import config_composed, stop_sweep

    hydra_errors.raise_instead_of_printing()
    missing_key = hydra_errors.keyless(sys.argv[1:])
    if missing_key:  # Hydra reads `=1` as a config group, failing differently run or sweep
        print(f"error: {missing_key}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    try:
        try:
            main()
        except Exception as exc:
            interrupt = interrupt_behind(exc)
            if interrupt is not None:  # Ctrl-C or SIGTERM while Hydra composed the config
                raise interrupt from None
            if config_composed() or not hydra_errors.raised_for_cvsweep():
                raise
            # Hydra rejected the command line: said in one paragraph, the user's to fix.
            listed = hydra_errors.list_item(sys.argv[1:])
            if listed:  # OmegaConf's TypeError or error about a list addressed by a name
                print(f"error: {listed}", file=sys.stderr, flush=True)
            elif isinstance(exc, HydraException | OmegaConfBaseException):
                print(f"error: {hydra_errors.explain(exc)}", file=sys.stderr, flush=True)
            elif "--experimental-rerun" in sys.argv:
                # Hydra unpickles the file it is given as is: another file fails inside.
                print(
                    "error: --experimental-rerun could not read its file as a job's config "
                    f"({type(exc).__name__}: {one_paragraph(exc)}): it takes the config.pickle "
                    "that Hydra's PickleJobInfoCallback writes in a job's .hydra folder. "
                    "`cvsweep rerun <run id>` reruns any logged run without it.",
                    file=sys.stderr,
                    flush=True,
                )
            elif isinstance(exc, ValueError):  # Hydra's own checks of its flags (-m with --cfg)
                print(f"error: {one_paragraph(exc)}", file=sys.stderr, flush=True)
            elif any("hydra.sweeper.params" in a for a in sys.argv[1:]):
                # Hydra's basic sweeper has no params node until a config file makes one:
                # set from the command line, OmegaConf fails inside on its None.
                print(
                    "error: hydra.sweeper.params cannot be set on the command line: Hydra's "
                    "sweeper reads it from a config file (as the presets in conf/experiment/ "
                    "set it). Give the values to sweep as overrides instead: python train.py "
                    "-m optimizer.lr=0.01,0.1.",
                    file=sys.stderr,
                    flush=True,
                )
            else:
                traceback.print_exc()
            raise SystemExit(2) from None
    except SystemExit as exc:
        _on_the_way_out()
        if isinstance(exc, Terminated):  # SIGTERM outside training: said, as Ctrl-C is
            print("Interrupted by SIGTERM outside training: nothing more was trained.", flush=True)
        if exc.code == 1 and not config_composed():
            # Hydra rejected the command line and said why; like every other config error,
            # that is the user's to fix: exit code 2, not a failed job's 1.
            exc = SystemExit(2)
        stop_sweep(exc.code)
        code = _with_tracking_outcome(exc.code)
        exit_without_teardown(code)
        raise SystemExit(code) from None
    except KeyboardInterrupt:  # Ctrl-C outside training: setting a job up, between jobs
        _on_the_way_out()
        print("Interrupted by SIGINT outside training: nothing more was trained.", flush=True)
        stop_sweep(130)
        exit_without_teardown(130)
        raise SystemExit(130) from None
    _on_the_way_out()  # the tracking process's last writes decide the exit code
    code = _with_tracking_outcome(0)
    exit_without_teardown(code)
    if code:
        raise SystemExit(code)


def _with_tracking_outcome(code: object) -> object:
    """The exit code once the tracking process has written all it could.

    A command that would exit 0 but whose required store did not get every write exits 3:
    its files are complete, yet a script or a scheduler must see that the record is not, and
    the same command run again completes it. Any other code is kept as it is.
    """
    if code not in (None, 0):
        return code
    from .store_proxy import LOST, TRACKING_INCOMPLETE, close_shared

    close_shared()
    if not (LOST.required and LOST.problems):
        return code
    print(
        "error: training finished and its files are complete, but the tracking store did not "
        "get everything (the warnings above say what). Once the store answers, run the same "
        "command again: the run is resumed from its last checkpoint (its job folder's on this "
        "machine, else the store's; trained again where there is none) and the store gets "
        "what it missed. Exit code "
        f"{TRACKING_INCOMPLETE} (with tracking.required=false this is only a warning).",
        file=sys.stderr,
        flush=True,
    )
    return TRACKING_INCOMPLETE


def _on_the_way_out() -> None:
    """Ignore further Ctrl-C and SIGTERM while the sweep's status, its report and the tracking
    process's last writes are recorded (about a second; Ctrl-backslash still quits at once)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise Terminated(signum)


# Modules whose worker pools or threads the interpreter's normal shutdown joins.
_POOL_MODULES = ("joblib", "loky", "submitit", "concurrent.futures.process")


def exit_without_teardown(code: object) -> None:
    """End the process after the exit handlers, skipping the teardown of the modules.

    Tearing down an interpreter that holds torch took 0.4 s on the 2-core VM, and 0.8 s once an
    optimizer step has imported torch._dynamo (docs/performance.md): time spent after the run's
    last line, in every run and every test. By now everything a run writes is closed; the exit
    handlers still run (the tracking process is closed there and writes what it was sent) and the
    streams are flushed. Where a launcher's pool or a non-daemon thread is still about, this
    returns and the process exits the usual way, which joins them.
    """
    if any(name in sys.modules for name in _POOL_MODULES):
        return
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        return
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


# --------------------------------------------------------------------------- cvsweep CLI
def _cmd_ui(args: argparse.Namespace) -> int:
    from .server import serve

    return serve(args, ui_only=True)


def _cmd_server(args: argparse.Namespace) -> int:
    from .server import serve

    return serve(args, ui_only=False)


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare_cli import compare_main

    return compare_main(args)


def _cmd_rerun(args: argparse.Namespace) -> int:
    from .rerun import rerun_main

    return rerun_main(args)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .model_source import source_problem
    from .store_errors import EXIT_USER_ERROR

    # A mistyped source, or a run id looked up in a missing store, is named before torch loads.
    problem = source_problem(args.source, args.tracking_uri)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    from .evaluate import evaluate_main

    return evaluate_main(args)


def _cmd_data(args: argparse.Namespace) -> int:
    from .data import DataError
    from .fetch import RootError, fetch

    root = args.root or os.environ.get("CVSWEEP_DATA", "data")
    names = [args.dataset] if args.dataset else ["mnist", "fashion_mnist"]
    failed = 0
    for name in names:  # each dataset in turn: one that cannot be fetched does not stop the other
        try:
            fetch(name, root)  # it says what it found, fetched and verified
        except RootError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .results import report_main

    return report_main(args)


def _tolerance(text: str) -> float:
    """A finite number >= 0: a negative tolerance would fail every check, even a perfect one."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0.0 <= value < float("inf")):
        raise argparse.ArgumentTypeError(
            f"{text!r}: the tolerance is the largest difference accepted, a finite number >= 0"
        )
    return value


def _store_uri(text: str) -> str:
    """--tracking-uri as `load_model` reads its tracking_uri (`store_uri_or_path`)."""
    from .store_errors import store_uri_or_path

    return store_uri_or_path(text)


def _unrecognized(args: argparse.Namespace, extra: list[str]) -> None:
    """Say what was not understood with the usage of the command it was typed to."""
    sub: argparse.ArgumentParser = args.command_parser
    if args.command == "compare" and not any(e.startswith("-") for e in extra):
        sub.error(
            f"compare takes one target; several run ids are joined with commas, no spaces: "
            f"cvsweep compare {','.join([args.target, *extra])}"
        )
    sub.error(f"unrecognized arguments: {' '.join(extra)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvsweep",
        description=(
            "Helpers around `python train.py`: browse, compare, rerun and evaluate tracked runs."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def store_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--tracking-uri",
            default=None,
            type=_store_uri,
            help="store URI, or the path of an mlflow.db (default: $MLFLOW_TRACKING_URI or "
            "sqlite:///./mlflow.db)",
        )

    for name, helptext in (
        ("ui", "start the MLflow UI on 127.0.0.1 for the store train.py writes"),
        ("server", "start an MLflow tracking server (SQLite store + artifact root)"),
    ):
        p = sub.add_parser(name, help=helptext)
        store_args(p)
        p.add_argument("--port", type=int, default=5000, help="port to serve on (default: 5000)")
        p.add_argument(
            "--host",
            default="127.0.0.1",
            help="address to bind; anything but loopback needs --allow-remote",
        )
        p.add_argument(
            "--allow-remote",
            action="store_true",
            help="serve on a --host other machines can reach (no login: anyone who reaches it can "
            "read and delete runs)",
        )
        p.add_argument("--experiment", default="cvsweep", help="experiment whose link to print")
        p.set_defaults(func=_cmd_ui if name == "ui" else _cmd_server)

    p = sub.add_parser("compare", help="comparison report for a sweep, runs or an experiment")
    store_args(p)
    p.add_argument(
        "target",
        help="a sweep's folder (read from the store its jobs logged to, unless --tracking-uri "
        "names one), its parent run id, run ids (comma-separated) or an experiment name",
    )
    p.add_argument("--by", default=None, help="keys to compare, e.g. optimizer,augment")
    p.add_argument("--out", default=None, help="output folder (default: comparison-<target>)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("rerun", help="train again from a logged run's config")
    store_args(p)
    p.add_argument("run_id", help="the MLflow run id to train again (32 hex digits)")
    p.add_argument(
        "overrides",
        nargs="*",
        default=[],  # else argparse names it among the missing arguments, though it may be empty
        help="key=value overrides on top of the logged config",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="the rerun's job folder (default: outputs/rerun/<first 8 of the run id>-<YYYYMMDD-HHMMSS> "
        "here)",
    )
    p.add_argument("--check", action="store_true", help="exit 1 when metrics differ")
    p.add_argument(
        "--tolerance",
        type=_tolerance,
        default=0.0,
        help="largest absolute difference --check accepts (default 0: bit-exact)",
    )
    p.set_defaults(func=_cmd_rerun)

    p = sub.add_parser(
        "evaluate", help="a saved model's test accuracy, from its job folder or its run"
    )
    store_args(p)
    p.add_argument("source", help="job folder (or the model.pth in one), or an MLflow run id")
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=None,
        help="(default: the device type the run trained on where there is one, else cpu)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help=(
            "data folder (default: the run's dataset.root as it resolves here, else the root "
            "the run read, where only that one holds the dataset)"
        ),
    )
    p.add_argument(
        "--all", action="store_true", help="the whole test set, even if the run used fewer"
    )
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("data", help="dataset files")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    f = data_sub.add_parser("fetch", help="download and verify a dataset")
    f.add_argument(
        "dataset",
        nargs="?",
        choices=["mnist", "fashion_mnist"],
        help="the dataset to fetch (default: both)",
    )
    f.add_argument("--root", default=None, help="data folder (default: $CVSWEEP_DATA or data/)")
    f.set_defaults(func=_cmd_data, command_parser=f)

    p = sub.add_parser("report", help="write docs/results.md from the presets' runs")
    store_args(p)
    p.add_argument(
        "--out",
        default="docs/results.md",
        help="the document to write (default: docs/results.md here); its figures go to img/ "
        "beside it",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace --out even where it has results of presets this store has no runs of",
    )
    p.set_defaults(func=_cmd_report)
    for command in sub.choices.values():  # its own usage for what it does not understand
        command.set_defaults(command_parser=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    guard_stdout()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "rerun" and not any(e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]  # overrides typed after an option
    elif extra:
        _unrecognized(args, extra)
    try:
        # compare, report and rerun load MLflow with Ctrl-C held (signals.import_held) in
        # store_errors.open_client, once the store is known to exist: a mistyped store is told
        # at once.
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # training catches its own; this is loading, reading, writing
        _on_the_way_out()
        print(f"Interrupted by SIGINT: cvsweep {args.command} stopped.", file=sys.stderr)
        return 128 + signal.SIGINT


def entry() -> None:
    """The `cvsweep` command: run it, then end the process with exactly its exit code.

    Once a command has its outcome, a late Ctrl-C must not turn it into a death by signal, and
    CPython's own exit could end a process that had caught a Ctrl-C while MLflow loaded with
    SIGINT (-2) instead of its 130; ending through os._exit after the exit handlers avoids both.
    """
    code = main()
    _on_the_way_out()
    exit_without_teardown(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
