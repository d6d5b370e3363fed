"""When each part of a whole `train.py` command ran: a timeline, in-process.

    python -m bench.timeline [--all] -- train.py ARGS...

`bench.profile` says how long each call took in all; this says when, which is what a sweep's
wall clock needs: what ran before the first job, what waited for what (the tracking store, the
first job's one-time work), what each job spent outside its epochs, and how long the report
and the exit took. It times a fixed set of functions (`PHASES`) by wrapping them as their
modules load, so modules still load in the order `train.py` loads them and nothing else is
slowed (cProfile slows every Python call). Times are seconds since the process started
(read from /proc on Linux), so the interpreter's own start is included.

Calls of one function under the same parent that time nothing inside them (a job's log
points, its checkpoints, its waits for the store) are shown as one line, at the first call,
with their count and summed time; `--all` shows every call.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import importlib.abc
import importlib.machinery
import os
import runpy
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

# module -> the functions (or Class.method) in it to time, in roughly the order they run. Not
# Hydra's launchers or sweepers: Hydra's plugin scan runs their modules again, which replaces
# a wrapped class with a fresh one.
PHASES: dict[str, list[str]] = {
    "hydra._internal.hydra": ["Hydra.compose_config"],
    "hydra._internal.config_loader_impl": ["ConfigLoaderImpl.load_sweep_config"],
    "hydra.plugins.sweeper": ["Sweeper.validate_batch_is_legal"],
    "hydra.core.utils": ["run_job"],
    "cvsweep.cli": ["hydra_main", "train_task", "exit_without_teardown"],
    "cvsweep.sweep": [
        "MlflowSweepCallback.on_multirun_start",
        "validate_jobs",
        "MlflowSweepCallback.on_multirun_end",
        "MlflowSweepCallback._report",
    ],
    "cvsweep.runtime": ["preload_for_training"],
    "cvsweep.store_proxy": ["Pending.result", "StoreProxy.close"],
    "cvsweep.job": [
        "run_job",
        "_prepare",
        "_train",
        "_TrackedTrainer.on_checkpoint",
        "_finish_run",
    ],
    "cvsweep.data": ["load_raw", "to_device"],
    "cvsweep.engine": [
        "Trainer.fit",
        "Trainer._capture",
        "Trainer._log_point",
    ],
}


def process_age() -> float:
    """Seconds since this process started (0.0 where /proc is not there)."""
    try:
        with open("/proc/self/stat") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass
class Span:
    name: str
    start: float
    end: float | None = None
    children: list[Span] = field(default_factory=list)


class Recorder:
    """Spans of the wrapped calls, nested by call order (one thread: the main one)."""

    def __init__(self, offset: float) -> None:
        self.t0 = time.perf_counter() - offset
        self.root = Span("process", 0.0)
        self.stack = [self.root]

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def wrap(self, fn: Any, name: str) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != MAIN_THREAD:
                return fn(*args, **kwargs)
            span = Span(name, self.now())
            self.stack[-1].children.append(span)
            self.stack.append(span)
            try:
                return fn(*args, **kwargs)
            finally:
                span.end = self.now()
                while self.stack and self.stack[-1] is not span:
                    self.stack.pop()  # a callee that never returned (os._exit from within)
                if len(self.stack) > 1:
                    self.stack.pop()

        return timed

    def mark(self, what: str) -> None:
        """A moment rather than a call; shown at the top level."""
        t = self.now()
        self.root.children.append(Span(what, t, t))

    def lines(self, collapse: bool) -> list[str]:
        out: list[str] = []
        self._walk(self.root.children, 0, collapse, out)
        return out

    def _walk(self, spans: list[Span], depth: int, collapse: bool, out: list[str]) -> None:
        leaves: dict[str, list[Span]] = {}
        if collapse:
            for span in spans:
                if not span.children:
                    leaves.setdefault(span.name, []).append(span)
        for span in spans:
            group = leaves.get(span.name, [span]) if not span.children else [span]
            if group[0] is not span:
                continue  # shown with the first call of its name
            end = span.end if span.end is not None else self.now()
            indent = "  " * depth
            if len(group) == 1:
                out.append(f"{span.start:8.3f} {end - span.start:8.3f}   {indent}{span.name}")
                self._walk(span.children, depth + 1, collapse, out)
            else:
                last = group[-1].end if group[-1].end is not None else self.now()
                total = sum((s.end if s.end is not None else last) - s.start for s in group)
                out.append(
                    f"{span.start:8.3f} {total:8.3f}   {indent}{span.name} x{len(group)} "
                    f"(the last until {last:.3f})"
                )


MAIN_THREAD = threading.get_ident()


def _patch(module: Any, recorder: Recorder) -> None:
    for qualname in PHASES.get(module.__name__, []):
        owner: Any = module
        *path, attr = qualname.split(".")
        try:
            for part in path:
                owner = getattr(owner, part)
            fn = getattr(owner, attr)
        except AttributeError:
            recorder.mark(f"(not found: {module.__name__}.{qualname})")
            continue
        name = f"{module.__name__}.{qualname}".removeprefix("cvsweep.")
        setattr(owner, attr, recorder.wrap(fn, name.replace("hydra._internal.", "hydra.")))


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then wraps the module's timed functions before anyone uses them."""

    def __init__(self, loader: Any, recorder: Recorder) -> None:
        self.loader = loader
        self.recorder = recorder

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.loader.exec_module(module)
        _patch(module, self.recorder)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)  # get_source, resource readers, ...


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in PHASES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader, self.recorder)
        return spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every call, none collapsed")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- SCRIPT ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --, e.g. -- train.py trainer.epochs=1")
    recorder = Recorder(process_age())
    already = sorted(set(PHASES).intersection(sys.modules))
    if already:
        parser.error(f"loaded before the timeline could wrap them: {', '.join(already)}")
    sys.meta_path.insert(0, _Finder(recorder))
    recorder.mark("timeline loaded; the command starts")

    def show() -> None:
        recorder.mark("exit handlers")
        print("\ntimeline (s since the process started):  start  took   what", file=sys.stderr)
        print("\n".join(recorder.lines(collapse=not args.all)), file=sys.stderr, flush=True)

    atexit.register(show)
    sys.argv = command
    runpy.run_path(command[0], run_name="__main__")


if __name__ == "__main__":
    main()
