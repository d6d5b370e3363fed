"""The training loop: phases, batched steps on device tensors, evaluation, checkpoints.

The engine gets a plain config, the data already on the device, a model and a tracker. It never
imports Hydra or MLflow. Per-step work stays on the device: losses and correct counts are summed
into device tensors and read once per log point, so the loop has no per-batch host sync except
the non-finite check on CPU (where a read costs nothing). On CUDA the whole step -- augmentation,
forward, backward, optimizer -- can be captured once in a CUDA graph and replayed.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from . import augment as aug
from .checkpoint import atomic_save, restore_rng_state, rng_state
from .data import DeviceData
from .identity import config_hash
from .model import split_conv_bias_grads
from .model_source import CHECKPOINT_NAME, MODEL_NAME
from .optim import Phase, build_optimizer, build_scheduler, current_lr, plan_phases
from .runtime import SpeedSettings, speed_settings
from .signals import HeldSignals
from .tracker import Tracker


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN/inf loss; the step is in the message and in `.step`."""

    def __init__(
        self, step: int, epoch: int, since: int | None = None, kept: tuple[str, ...] = ()
    ) -> None:
        where = f"mini-batch {step}" if since is None else f"mini-batches {since}..{step}"
        saved = (
            f"The last good {' and '.join(kept)} (from the end of an earlier epoch) were kept. "
            if kept
            else "No weights were saved (none were good yet). "
        )
        super().__init__(
            f"Non-finite loss at {where} (epoch {epoch}): training stopped. {saved}Lower the "
            "learning rate (optimizer.lr) or check the data normalization."
        )
        self.step = step
        self.epoch = epoch


class Interrupted(RuntimeError):
    """SIGTERM or Ctrl-C stopped training after a checkpoint of the exact state was written."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"Interrupted by {name}; state saved to {checkpoint}.")
        self.signum = signum
        self.checkpoint = checkpoint


@dataclass
class LogPoint:
    epoch: int
    batch: int
    step: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float


def _point_metrics(point: LogPoint) -> dict[str, float]:
    """The metrics of one log point, as the tracker gets them."""
    return {
        "train_loss": point.train_loss,
        "train_acc": point.train_acc,
        "test_loss": point.test_loss,
        "test_acc": point.test_acc,
        "lr": point.lr,
    }


@dataclass
class TrainResult:
    history: list[LogPoint]
    final_test_acc: float
    best_test_acc: float
    final_test_loss: float
    final_train_loss: float
    train_time_s: float
    steps: int
    epochs: int
    model_path: Path
    checkpoint_path: Path
    epoch_times: list[float] = field(default_factory=list)
    # A Ctrl-C or SIGTERM that came after the last step: training is complete and recorded as
    # such, and the caller acts on the signal afterwards (a sweep starts no further job).
    late_signal: int | None = None


@dataclass
class _Accum:
    """Device-side sums since the last log point (and since the epoch start)."""

    loss: torch.Tensor
    correct: torch.Tensor
    batches: int = 0
    samples: int = 0

    @classmethod
    def zeros(cls, device: torch.device) -> _Accum:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long))

    def reset(self) -> None:
        self.loss.zero_()
        self.correct.zero_()
        self.batches = 0
        self.samples = 0


@dataclass
class _Progress:
    """Everything about how far a run has come, saved in and restored from checkpoints."""

    acc: _Accum
    step: int = 0
    history: list[LogPoint] = field(default_factory=list)
    best: float = -math.inf
    elapsed: float = 0.0
    epoch_times: list[float] = field(default_factory=list)
    lr: float = 0.0  # the rate of the latest step whose point is shown: an epoch's end shows it

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "acc": {
                "loss": self.acc.loss.cpu(),
                "correct": self.acc.correct.cpu(),
                "batches": self.acc.batches,
                "samples": self.acc.samples,
            },
            "history": [asdict(p) for p in self.history],
            "best_test_acc": self.best,
            "elapsed_s": self.elapsed,
            "epoch_times": list(self.epoch_times),
            "lr": self.lr,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self.acc.loss.copy_(state["acc"]["loss"])
        self.acc.correct.copy_(state["acc"]["correct"])
        self.acc.batches, self.acc.samples = state["acc"]["batches"], state["acc"]["samples"]
        self.history = [LogPoint(**p) for p in state["history"]]
        self.best, self.elapsed = state["best_test_acc"], state["elapsed_s"]
        self.epoch_times = list(state["epoch_times"])
        self.lr = state.get("lr", self.lr)  # fit sets it for a state saved without it


def ready_for(model: nn.Module, speed: SpeedSettings) -> nn.Module:
    """The model in the layout and module classes its step runs with (in place): training and
    a later evaluation of its saved weights compute the same way."""
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)
    if speed.split_bias_grad:
        split_conv_bias_grads(model)
    return model


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    channels_last: bool = False,
    bf16: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, accuracy) as device scalars, so callers choose when to sync.

    Evaluation uses the training step's layout and precision; the loss is summed in fp32.
    """
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    with torch.inference_mode():
        for start in range(0, len(y), batch_size):
            batch = x[start : start + batch_size]
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model(batch).float()
            target = y[start : start + batch_size]
            loss += F.cross_entropy(out, target, reduction="sum")
            correct += (out.argmax(1) == target).sum()
    model.train(was_training)
    return loss / len(y), correct.float() / len(y)


class _GraphedStep:
    """A captured step: copy the batch's indices in, replay, read the (static) loss."""

    def __init__(self, graph: Any, static_idx: torch.Tensor, static_loss: torch.Tensor) -> None:
        self.graph = graph
        self.static_idx = static_idx
        self.static_loss = static_loss

    def __call__(self, batch_idx: torch.Tensor) -> torch.Tensor:
        self.static_idx.copy_(batch_idx)
        self.graph.replay()
        return self.static_loss


class Trainer:
    """Runs one training job from a config; see the module docstring for the design."""

    def __init__(
        self,
        cfg: DictConfig,
        data: DeviceData,
        model: nn.Module,
        tracker: Tracker,
        out_dir: Path,
        device: torch.device,
        console: Callable[[str], None] = print,
    ) -> None:
        self.cfg = cfg
        self.data = data
        self.model = model
        self.tracker = tracker
        self.out_dir = Path(out_dir)
        self.device = device
        self.console = console
        t = cfg.trainer
        self.n_train = len(data.train_y)
        self.batch_size = min(int(t.batch_size), self.n_train)
        # Equal-size batches (the last partial one is dropped): the mean of batch means is then
        # the true mean, and a CUDA graph sees one static shape.
        self.steps_per_epoch = self.n_train // self.batch_size
        self.log_every = int(t.log_every)
        self.phases: list[Phase] = plan_phases(cfg)
        self.total_epochs = sum(p.epochs for p in self.phases)
        self.use_graphs = device.type == "cuda" and t.cuda_graphs in ("auto", "on")
        self.augmenting = cfg.augment.flip_p > 0 or cfg.augment.degrees > 0
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(int(cfg.seed))
        self.fault_at_step = t.get("fault_at_step")
        self.speed = speed_settings(t, device)
        ready_for(self.model, self.speed)
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME
        self.model_path = self.out_dir / MODEL_NAME
        self.config_hash = config_hash(cfg)
        self.upload_resumed_state = False  # on_checkpoint() for the state fit() resumes from
        self._bar: Any = None  # the epoch's progress bar, where one is shown

    # ----------------------------------------------------------------- the step
    def _make_step(
        self, optimizer: torch.optim.Optimizer, acc: _Accum
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The eager step: index, augment, forward, backward, update, accumulate."""
        data, model = self.data, self.model
        flip_p, degrees, fill = self.cfg.augment.flip_p, self.cfg.augment.degrees, data.fill
        channels_last, bf16 = self.speed.channels_last, self.speed.bf16
        device_type = self.device.type

        def step(idx: torch.Tensor) -> torch.Tensor:
            x = data.train_x[idx]
            y = data.train_y[idx]
            if self.augmenting:
                x = aug.augment_batch(x, flip_p, degrees, fill)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
                out = model(x)
                loss = F.cross_entropy(out, y)
            # Gradients set to None, not zeroed, on both paths: backward then writes them
            # instead of adding into zeros. In a captured graph that is 11 kernels fewer per
            # step (a zeroing and one add per parameter), and the gradients live in the graph's
            # own memory pool, as in PyTorch's whole-network capture.
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            acc.loss += loss.detach()
            acc.correct += (out.argmax(1) == y).sum()
            return loss.detach()

        return step

    GRAPH_WARMUP = 3

    def _warm_step(
        self, step: Callable[[torch.Tensor], torch.Tensor], idx: torch.Tensor
    ) -> torch.Tensor:
        """An eager step on a side stream, as CUDA graph capture requires before capturing."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            loss = step(idx)
        torch.cuda.current_stream().wait_stream(side)
        return loss

    def _capture(
        self, step: Callable[[torch.Tensor], torch.Tensor], idx: torch.Tensor
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """Record `step` once in a CUDA graph; replaying it trains on whatever idx holds.

        Capture records kernels without running them, so the batch that triggers the capture
        is trained by the first replay, like any other batch.
        """
        static_idx = idx.clone()
        graph = torch.cuda.CUDAGraph()
        # Gradients are freed before capture, not inside it: backward then allocates them in
        # the graph's own pool, where every replay writes them (PyTorch's whole-network recipe).
        self.model.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            static_loss = step(static_idx)
        return _GraphedStep(graph, static_idx, static_loss)

    # ----------------------------------------------------------------- logging
    def _log_point(
        self, epoch: int, batch: int, run: _Progress, lr: float, bar: Any = None
    ) -> LogPoint:
        """Evaluate, print one line, log the metrics, and reset the interval sums.

        A progress bar on the same terminal is cleared while the line prints and drawn again
        below it: the bar leaves its cursor at the end of its own line, so a line printed
        over it would start with the bar's text.
        """
        acc, step = run.acc, run.step
        if self.device.type == "cuda" and not math.isfinite(float(acc.loss.item())):
            raise NonFiniteLoss(step, epoch, since=step - acc.batches + 1, kept=self._kept())
        test_loss, test_acc = evaluate(
            self.model,
            self.data.test_x,
            self.data.test_y,
            int(self.cfg.trainer.eval_batch_size),
            channels_last=self.speed.channels_last,
            bf16=self.speed.bf16,
        )
        batches = max(acc.batches, 1)
        point = LogPoint(
            epoch=epoch,
            batch=batch,
            step=step,
            train_loss=float(acc.loss.item()) / batches,
            train_acc=float(acc.correct.item()) / max(acc.samples, 1),
            test_loss=float(test_loss.item()),
            test_acc=float(test_acc.item()),
            lr=lr,
        )
        acc.reset()
        run.history.append(point)
        run.best = max(run.best, point.test_acc)
        if bar is not None:
            bar.clear()
        self.console(
            f"epoch {epoch:>3}/{self.total_epochs}  batch {batch:>5}/{self.steps_per_epoch}"
            f"  step {step:>6} | train loss {point.train_loss:.4f} acc {100 * point.train_acc:6.2f}%"
            f" | test loss {point.test_loss:.4f} acc {100 * point.test_acc:6.2f}%"
            f" | lr {point.lr:.3e}"
        )
        if bar is not None:
            bar.refresh()
        self.tracker.log_metrics(_point_metrics(point), step=step)
        return point

    def _phase_line(self, phase: Phase) -> str:
        """`phase 1/2: epochs 1-10, sgd lr=0.0001 momentum=0.9 ...`: which optimizer trains
        which epochs, printed as the phase starts (a resumed run starts mid-phase)."""
        first = sum(p.epochs for p in self.phases[: phase.index]) + 1
        last = first + phase.epochs - 1
        span = f"epochs {first}-{last}" if last > first else f"epoch {first}"
        settings = " ".join(f"{k}={v}" for k, v in phase.optimizer.items() if k != "name")
        return (
            f"phase {phase.index + 1}/{len(self.phases)}: {span} of {self.total_epochs}, "
            f"{phase.optimizer.name} {settings}"
        )

    def _epoch_metrics(self, point: LogPoint, epoch_time: float) -> dict[str, float]:
        return {
            "epoch_test_acc": point.test_acc,
            "epoch_test_loss": point.test_loss,
            "epoch_time_s": epoch_time,
            "samples_per_s": self.steps_per_epoch * self.batch_size / max(epoch_time, 1e-9),
        }

    def _send_history(self, run: _Progress) -> None:
        """A resumed run sends its recorded history again: the tracker passes on only the
        points the store lacks (a store that was away for a while missed some, and a
        checkpoint from the run's own folder can be ahead of the store)."""
        for point in run.history:
            self.tracker.log_metrics(_point_metrics(point), step=point.step)
        last_of_epoch = {point.epoch: point for point in run.history}
        for epoch, epoch_time in enumerate(run.epoch_times, start=1):
            if epoch in last_of_epoch:
                metrics = self._epoch_metrics(last_of_epoch[epoch], epoch_time)
                self.tracker.log_metrics(metrics, step=epoch)

    def _progress(self, epoch: int, start: int) -> Any:
        mode = self.cfg.trainer.progress
        show = mode == "on" or (mode == "auto" and sys.stderr.isatty())
        if not show:
            return None
        from tqdm import tqdm

        self._bar = tqdm(
            total=self.steps_per_epoch,
            initial=start,
            desc=f"epoch {epoch}/{self.total_epochs}",
            leave=False,
            unit="batch",
            file=sys.stderr,
        )
        return self._bar

    # ----------------------------------------------------------------- state
    def _state(
        self,
        phase: int,
        epoch_in_phase: int,
        batch: int,
        perm: torch.Tensor | None,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        progress: _Progress,
    ) -> dict[str, Any]:
        """The exact training state: resuming from it continues as if never stopped."""
        return {
            "format": 1,
            # Which config this state belongs to: a resume from a run's local folder checks it.
            "config_hash": self.config_hash,
            "phase": phase,
            "epoch_in_phase": epoch_in_phase,
            "batch": batch,
            "perm": None if perm is None else perm.cpu(),
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "rng": rng_state(self.generator),
            **progress.to_dict(),
        }

    def _save_model(self) -> None:
        atomic_save(self.model.state_dict(), self.model_path)

    # ----------------------------------------------------------------- the loop
    def fit(self, resume: dict[str, Any] | None = None) -> TrainResult:
        """Train the run's phases (from `resume`, a saved state, where given).

        An error that stops training mid-epoch (a non-finite loss, an injected fault, ...)
        clears the progress bar first, so the error the job prints starts its own line.
        """
        try:
            return self._fit(resume)
        except BaseException:
            if self._bar is not None:
                self._bar.close()
            raise

    def _fit(self, resume: dict[str, Any] | None) -> TrainResult:
        device = self.device
        acc = _Accum.zeros(device)
        run = _Progress(acc)
        start_phase, start_epoch, start_batch = 0, 0, 0
        resume_perm: torch.Tensor | None = None
        if resume is not None:
            self.model.load_state_dict(resume["model"])
            run.load(resume)
            start_phase, start_epoch = resume["phase"], resume["epoch_in_phase"]
            start_batch = resume["batch"]
            resume_perm = None if resume["perm"] is None else resume["perm"].to(device)
            self._send_history(run)
        self.model.train()
        epoch = sum(p.epochs for p in self.phases[:start_phase]) + start_epoch
        if resume is not None and self.upload_resumed_state:
            self.on_checkpoint(epoch + 1 if start_batch else epoch)  # the epoch it is in
        bs = self.batch_size
        # SIGTERM/SIGINT become a flag the loop checks between steps. Stopping between steps
        # (not inside one) is what makes the saved state exact: the optimizer and the data order
        # are never caught half-way. A second Ctrl-C stops at once.
        stop = HeldSignals(signal.SIGTERM, signal.SIGINT, second_ctrl_c_stops=True)
        with stop:
            for phase in self.phases[start_phase:]:
                optimizer = build_optimizer(
                    self.model.parameters(),
                    phase.optimizer,
                    graph_safe=self.use_graphs,
                    fused=self.speed.fused_optimizer,
                )
                scheduler, per_batch = build_scheduler(
                    optimizer,
                    self.cfg.schedule,
                    float(phase.optimizer.lr),
                    phase.epochs,
                    self.steps_per_epoch,
                )
                if len(self.phases) > 1:
                    self.console(self._phase_line(phase))
                first_epoch = 0
                if resume is not None and phase.index == start_phase:
                    optimizer.load_state_dict(resume["optimizer"])
                    if scheduler is not None and resume["scheduler"] is not None:
                        scheduler.load_state_dict(resume["scheduler"])
                    if "lr" not in resume:  # saved by older code: shown as it showed it
                        run.lr = current_lr(optimizer)
                    restore_rng_state(resume["rng"], self.generator)
                    first_epoch = start_epoch
                step_fn = self._make_step(optimizer, acc)
                graphed: Callable[[torch.Tensor], torch.Tensor] | None = None
                eager_steps = 0
                for e in range(first_epoch, phase.epochs):
                    epoch += 1
                    t0 = time.perf_counter()
                    b0, carried = 0, 0.0
                    if resume_perm is not None:
                        perm, b0, resume_perm = resume_perm, start_batch, None
                        # this epoch's time before the stop: counted in elapsed, in no epoch
                        carried = max(run.elapsed - sum(run.epoch_times), 0.0)
                    else:
                        perm = torch.randperm(self.n_train, generator=self.generator, device=device)
                    bar = self._progress(epoch, b0)
                    for b in range(b0, self.steps_per_epoch):
                        idx = perm[b * bs : (b + 1) * bs]
                        # A point shows the rate its step trained with: read before a per-batch
                        # scheduler moves on, and only where a point will show it (on a GPU a
                        # read waits for the device).
                        if (run.step + 1) % self.log_every == 0 or b + 1 == self.steps_per_epoch:
                            run.lr = current_lr(optimizer)
                        if not self.use_graphs:
                            loss = step_fn(idx)
                        elif graphed is None and eager_steps >= self.GRAPH_WARMUP:
                            graphed = self._capture(step_fn, idx)
                            loss = graphed(idx)
                        elif graphed is None:
                            loss = self._warm_step(step_fn, idx)
                            eager_steps += 1
                        else:
                            loss = graphed(idx)
                        run.step += 1
                        acc.batches += 1
                        acc.samples += bs
                        self._after_step(loss, run.step, epoch, scheduler, per_batch)
                        if bar is not None:
                            bar.update(1)
                        if run.step % self.log_every == 0:
                            self._log_point(epoch, b + 1, run, run.lr, bar)
                        # At the last step what is left (the epoch's end) takes less than
                        # stopping and resuming would: the run finishes, the signal waits.
                        last_step = run.step == self.total_epochs * self.steps_per_epoch
                        if stop.first is not None and not last_step:
                            if bar is not None:
                                bar.close()
                            run.elapsed += time.perf_counter() - t0
                            state = self._state(
                                phase.index, e, b + 1, perm, optimizer, scheduler, run
                            )
                            atomic_save(state, self.checkpoint_path)
                            self.on_checkpoint(epoch)
                            raise Interrupted(stop.first, self.checkpoint_path)
                    if bar is not None:
                        bar.close()
                    if scheduler is not None and not per_batch:
                        scheduler.step()
                    if self.device.type == "cuda":
                        torch.cuda.synchronize()
                    took = time.perf_counter() - t0
                    run.elapsed += took
                    epoch_time = carried + took  # a resumed epoch: both parts of it
                    run.epoch_times.append(epoch_time)
                    if run.step % self.log_every != 0:  # the same lr as a point in the loop
                        self._log_point(epoch, self.steps_per_epoch, run, run.lr)
                    self.tracker.log_metrics(
                        self._epoch_metrics(run.history[-1], epoch_time), step=epoch
                    )
                    if self.cfg.trainer.checkpoint_every_epoch or epoch == self.total_epochs:
                        next_phase, next_epoch = phase.index, e + 1
                        if next_epoch == phase.epochs:
                            next_phase, next_epoch = phase.index + 1, 0
                        state = self._state(
                            next_phase, next_epoch, 0, None, optimizer, scheduler, run
                        )
                        atomic_save(state, self.checkpoint_path)
                        self.on_checkpoint(epoch)
                    self._save_model()
        if resume is not None and start_phase >= len(self.phases):
            self._save_model()  # resumed from a finished state: nothing left to train
        last = run.history[-1]
        return TrainResult(
            history=run.history,
            final_test_acc=last.test_acc,
            best_test_acc=run.best,
            final_test_loss=last.test_loss,
            final_train_loss=last.train_loss,
            train_time_s=run.elapsed,
            steps=run.step,
            epochs=self.total_epochs,
            model_path=self.model_path,
            checkpoint_path=self.checkpoint_path,
            epoch_times=run.epoch_times,
            late_signal=stop.first,
        )

    def _kept(self) -> tuple[str, ...]:
        """The files of this job folder that hold good weights when training diverges."""
        return tuple(p.name for p in (self.checkpoint_path, self.model_path) if p.is_file())

    def on_checkpoint(self, epoch: int) -> None:
        """Hook for callers, after each checkpoint write: at an epoch's end, and the exact
        state when a signal stops training (the job uploads it to the tracker here)."""

    def _after_step(
        self, loss: torch.Tensor, step: int, epoch: int, scheduler: Any, per_batch: bool
    ) -> None:
        # On CPU a read is free, so every step is checked; on CUDA a read would sync the
        # device, so the summed loss is checked at each log point instead (see _log_point).
        if self.device.type == "cpu" and not math.isfinite(float(loss)):
            raise NonFiniteLoss(step, epoch, kept=self._kept())
        if scheduler is not None and per_batch:
            scheduler.step()
        if self.fault_at_step is not None and step == self.fault_at_step:
            raise RuntimeError(f"injected fault at mini-batch {step} (trainer.fault_at_step)")
