"""The trainer's side of the tracking process (`store_worker`): start it, ask it, tell it.

A trainer never imports MLflow. `shared_proxy()` starts one tracking process per trainer
process, early, so that MLflow's import and the store's opening happen on another core while
torch is imported and the data is loaded. After that, logging is a message on a pipe: a few
microseconds, whatever the store costs.

`request` returns a `Pending` answer (for what the trainer must know: the experiment, the
previous runs, a new run's id); `post` sends and forgets. Failures of posted writes are kept by
the tracking process and reported by `failures()` or when a run is finished.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .tracking import TrackingError
from .tracking_files import remove_snapshot

_PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])


@contextlib.contextmanager
def _ctrl_c_ignored_by_children() -> Iterator[None]:
    """Start processes that ignore Ctrl-C from their first instruction.

    A terminal's Ctrl-C reaches the whole process group; the tracking process must outlive it
    until the trainer has recorded the run (it ignores SIGINT itself once running, but a press
    while it still imports would end it with a traceback). An ignored signal stays ignored
    across exec, and Python then installs no KeyboardInterrupt handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


class StoreProxy:
    """One tracking process and the two pipes to it."""

    def __init__(self) -> None:
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p
        )
        try:
            with _ctrl_c_ignored_by_children():
                self.process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "cvsweep.store_worker",
                        str(to_worker_r),
                        str(from_worker_w),
                    ],
                    pass_fds=(to_worker_r, from_worker_w),
                    stdin=subprocess.DEVNULL,
                    env=env,
                )
        finally:
            os.close(to_worker_r)
            os.close(from_worker_w)
        self.pid = os.getpid()
        self._send = Connection(to_worker_w, readable=False)
        self._recv = Connection(from_worker_r, writable=False)
        self._ids = itertools.count(1)
        self._answers: dict[int, tuple[Any, ...]] = {}
        self._lock = threading.Lock()
        self.closed = False
        self.gone = False  # found dead, and said so to whoever asked
        self.used = False  # asked anything beyond warming up?
        # Set by the sweep callback in the process that runs a basic launcher's jobs: a job's
        # last uploads then overlap the next job instead of delaying it.
        self.defer_finish = False

    # ------------------------------------------------------------ messages
    def _put(self, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], reply: bool) -> int:
        msg_id = next(self._ids)
        self.used = self.used or op != "warm"
        with self._lock:
            if self.closed:
                raise TrackingError("The tracking process was already closed.")
            try:
                self._send.send((msg_id, op, args, kwargs, reply))
            except OSError:
                self.gone = True
                raise TrackingError(self._gone_message()) from None
        return msg_id

    def request(self, op: str, *args: Any, **kwargs: Any) -> Pending:
        return Pending(self, self._put(op, args, kwargs, True))

    def call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        return self.request(op, *args, **kwargs).result()

    def post(self, op: str, *args: Any, **kwargs: Any) -> None:
        self._put(op, args, kwargs, False)

    def _answer(self, msg_id: int) -> tuple[Any, ...]:
        with self._lock:
            while msg_id not in self._answers:
                try:
                    answer = self._recv.recv()
                except (EOFError, OSError):
                    self.gone = True
                    raise TrackingError(self._gone_message()) from None
                self._answers[answer[0]] = answer
            return self._answers.pop(msg_id)

    def _gone_message(self) -> str:
        return f"The tracking process (pid {self.process.pid}) {self.how_it_ended()}."

    def how_it_ended(self) -> str:
        """Killed by a signal (nothing of its own to read), or exited (its messages say why)."""
        code = self.process.poll()
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return f"was killed ({signal.Signals(-code).name})"
        how = "exited" if code is None else f"exited with code {code}"
        return f"{how}; its messages above say why"

    # ------------------------------------------------------------ lifecycle
    def failures(self) -> list[str]:
        """Failed writes since the last call; returns once every earlier message is handled."""
        return list(self.call("failures"))

    def close(self, timeout: float = 300.0) -> list[str]:
        """Let the tracking process write what it has, then stop it; returns failures."""
        if self.closed or os.getpid() != self.pid:
            return []
        if not self.used:  # started early, never needed (tracking off, --help, bad config)
            self.discard()
            return []
        found: list[str] = []
        reported = self.gone  # a death already reported is not news
        try:
            found = list(self.call("close"))
        except TrackingError as exc:
            found = [] if reported else [str(exc)]
        finally:
            self.closed = True
            for conn in (self._send, self._recv):
                with contextlib.suppress(OSError):
                    conn.close()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return found

    def discard(self) -> None:
        """Stop a tracking process that holds nothing: no run, no pending write."""
        self.closed = True
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.wait()
        for conn in (self._send, self._recv):
            with contextlib.suppress(OSError):
                conn.close()


class Pending:
    """An answer still on its way; `result()` waits for it and raises what went wrong."""

    def __init__(self, proxy: StoreProxy, msg_id: int) -> None:
        self.proxy = proxy
        self.msg_id = msg_id
        self._done: tuple[Any, ...] | None = None

    def result(self) -> Any:
        if self._done is None:
            self._done = self.proxy._answer(self.msg_id)
        if self._done[1] == "ok":
            return self._done[2]
        kind, message = self._done[2], self._done[3]
        raise TrackingError(message if kind == "TrackingError" else f"{kind}: {message}")


_shared: StoreProxy | None = None


def shared_proxy() -> StoreProxy:
    """This process's tracking process, started on first use (or when the last one was found
    dead) and closed at exit."""
    global _shared
    if _shared is None or _shared.closed or _shared.gone or _shared.pid != os.getpid():
        # A tracking process found dead is replaced: its loss was reported to the run that was
        # using it, and what comes next (a sweep's next job, its report) is tracked again.
        if _shared is not None and _shared.gone and not _shared.used and _shared.pid == os.getpid():
            # Found dead as it warmed up (killed as it started): nobody was told, nothing lost.
            _say_replaced(_shared, "anything was written")
        _shared = StoreProxy()
        with contextlib.suppress(TrackingError):  # dead already: the first request says so
            _shared.post("warm")
        atexit.register(_close_at_exit, _shared)
    return _shared


def replace_dead(proxy: StoreProxy, writer: str) -> StoreProxy:
    """A new tracking process in place of `proxy`, found dead before `writer` ("this job",
    "the sweep") wrote anything to the store: nothing is lost by asking another, and failing
    for a helper that can simply be started again would be worse."""
    _say_replaced(proxy, f"{writer} wrote anything")
    return shared_proxy()


def _say_replaced(proxy: StoreProxy, before: str) -> None:
    print(
        f"note: the tracking process (pid {proxy.process.pid}) {proxy.how_it_ended()} before "
        f"{before} to the store: a new one is started",
        flush=True,
    )


def start_early(argv: list[str]) -> None:
    """Start the tracking process before Hydra composes the config (tracking is the default).

    Composing takes a while, and MLflow's import takes longer than torch's: starting first is
    what lets the store be ready when the job asks. Skipped when the command line turns
    tracking off; otherwise `discard_unused` stops it once the config says no tracking.
    """
    off = {"tracking=none", "tracking.enabled=false", "tracking.enabled=False"}
    if not off.intersection(argv) and not any(a in ("--help", "-h", "--cfg", "-c") for a in argv):
        shared_proxy()


def discard_unused() -> None:
    """Stop the early-started tracking process if this process turned out not to track."""
    global _shared
    if _shared is not None and not _shared.used and _shared.pid == os.getpid():
        _shared.discard()
        _shared = None


def _close_at_exit(proxy: StoreProxy) -> None:
    for failure in proxy.close():
        warn_lost(failure)


def close_shared() -> None:
    """Close this process's tracking process now, so its last failures count for the exit code."""
    if _shared is not None and _shared.pid == os.getpid() and not _shared.closed:
        _close_at_exit(_shared)


@dataclass
class _LostWrites:
    """Tracking problems this process reported: writes the store did not get.

    `required`: did a job of this process require its tracking (`tracking.required`)? Then a
    command that trained but left the store incomplete does not exit 0 (cli.hydra_main), so a
    script or a scheduler sees it and can run the same command again, which completes the run.
    """

    problems: list[str] = field(default_factory=list)
    required: bool = False


LOST = _LostWrites()
TRACKING_INCOMPLETE = 3  # exit code: trained, but the required tracking store missed writes


def warn_lost(problem: str, *, stdout: bool = False) -> None:
    """Say that a tracking write was not made, and keep it for the exit code."""
    LOST.problems.append(problem)
    # One line each: SQLAlchemy's messages go on with the SQL and a link on lines of their own.
    first = problem.strip().splitlines()[0] if problem.strip() else problem
    print(f"warning: tracking: {first}", file=sys.stdout if stdout else sys.stderr, flush=True)


class ProxyTracker:
    """One MLflow run as seen by the engine: every call is a message, none waits for the store."""

    def __init__(
        self,
        proxy: StoreProxy,
        uri: str,
        run_id: str,
        logged_steps: dict[str, list[int]] | None = None,
    ) -> None:
        self.proxy = proxy
        self.uri = uri
        self.run_id = run_id
        self._lost = False
        # A resumed run: the steps of each metric already in the store. The history sent
        # again and the points recomputed after the checkpoint are sent only where missing.
        self.logged_steps = {k: set(v) for k, v in (logged_steps or {}).items()}

    def _post(self, op: str, *args: Any) -> None:
        if self._lost:
            return
        try:
            self.proxy.post(op, self.uri, self.run_id, *args)
        except TrackingError as exc:
            # Training goes on; the run's files stay in its folder and the end says what is lost.
            self._lost = True
            warn_lost(str(exc))

    def _unlogged(self, metrics: dict[str, float], step: int) -> dict[str, float]:
        """The metrics whose point at this step is not in the store yet (see logged_steps)."""
        logged = self.logged_steps
        return {k: float(v) for k, v in metrics.items() if step not in logged.get(k, ())}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now, step = int(time.time() * 1000), int(step)
        points = [(k, v, now, step) for k, v in self._unlogged(metrics, step).items()]
        if points:
            self._post("metrics", points)

    def log_params(self, params: dict[str, Any]) -> None:
        self._post("params", params)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._post("tags", {k: str(v) for k, v in tags.items()})

    def log_artifact(
        self, path: Path, artifact_path: str | None = None, *, remove: bool = False
    ) -> None:
        """Upload path; with `remove`, path (a snapshot in a folder of its own) is deleted
        once uploaded, or here when the tracking process will never see it."""
        self._post("artifact", str(path), artifact_path, remove)
        if remove and self._lost:
            remove_snapshot(path)

    def log_artifacts(self, folder: Path, artifact_path: str | None = None) -> None:
        self._post("artifacts", str(folder), artifact_path)

    def finish(
        self,
        status: str,
        *,
        metrics: dict[str, float] | None = None,
        step: int = 0,
        history: list[Any] | None = None,
        curves_path: Path | None = None,
        artifacts: list[tuple[Path, str | None]] | None = None,
        wait: bool = True,
    ) -> list[str]:
        """Final metrics, curves and artifacts, then the status.

        With `wait`, returns once it is all written, with what failed since the last report
        (this run's writes and any other); otherwise the next `failures()` reports them.
        """
        if self._lost:
            return ["the tracking process was lost during the run"]
        args = (
            self.uri,
            self.run_id,
            status,
            self._unlogged(metrics or {}, int(step)),
            int(step),
            [asdict(p) for p in history or []],
            None if curves_path is None else str(curves_path),
            [(str(p), a) for p, a in artifacts or []],
        )
        try:
            self.proxy.post("finish_run", *args)
            return self.proxy.failures() if wait else []
        except TrackingError as exc:
            return [str(exc)]
