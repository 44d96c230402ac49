"""The training loop. It knows nothing of databases or brokers: persistence lives in the
callbacks passed in (worker/callbacks.py), so the loop runs on a CPU in a test with a toy
network and a list as its sink.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from core.jobspec import JobSpec
from worker.augment import build_augmenter
from worker.data import TrainData
from worker.evaluate import batch_correct, evaluate
from worker.probes import LayerProbe
from worker.schedules import Scheduler, build_scheduler


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the job fails with advice instead of a traceback."""


class Preempted(Exception):
    """Training stopped at a step boundary on request, after the callbacks checkpointed."""


@dataclass
class EpochProgress:
    """Where the loop is inside an epoch. Checkpointed with the rest, so that a run resumed
    from the middle of an epoch continues with the same batches and the same sums."""

    order: torch.Tensor | None = None  # this epoch's sample order; None: not started
    batch: int = 0  # batches of this epoch already trained
    loss_sum: torch.Tensor | None = None
    correct: torch.Tensor | None = None
    window_loss: torch.Tensor | None = None
    window_count: int = 0
    elapsed_s: float = 0.0

    def start(self, order: torch.Tensor) -> None:
        device = order.device
        self.order, self.batch, self.window_count, self.elapsed_s = order, 0, 0, 0.0
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.window_loss = torch.zeros((), device=device)

    def as_dict(self) -> dict:
        if self.order is None:
            return {}
        return {"order": self.order.cpu(), "batch": self.batch,
                "loss_sum": self.loss_sum.cpu(), "correct": self.correct.cpu(),
                "window_loss": self.window_loss.cpu(), "window_count": self.window_count,
                "elapsed_s": self.elapsed_s}

    @classmethod
    def from_dict(cls, saved: dict, device: torch.device) -> EpochProgress:
        if not saved:
            return cls()
        return cls(saved["order"].to(device), saved["batch"], saved["loss_sum"].to(device),
                   saved["correct"].to(device), saved["window_loss"].to(device),
                   saved["window_count"], saved["elapsed_s"])


@dataclass
class LoopState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    shuffle: torch.Generator
    epoch: int = 0  # the epoch in progress, or the last one finished
    step: int = 0
    total_steps: int = 0
    epochs: int = 0
    in_epoch: EpochProgress = field(default_factory=EpochProgress)
    scheduler: Scheduler | None = None


@dataclass
class Point:
    name: str
    value: float
    step: int
    epoch: int


class Callback(Protocol):
    def on_points(self, state: LoopState, points: list[Point]) -> None: ...

    def on_epoch_end(self, state: LoopState, metrics: dict[str, float]) -> None: ...

    def on_train_end(self, state: LoopState, metrics: dict[str, float]) -> None: ...

    def on_preempt(self, state: LoopState) -> None: ...


def _check_finite(value: float, step: int, lr: float) -> None:
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"the training loss became {value} at step {step}; lower the learning rate "
            f"(now {lr:g}), standardize the inputs, or use a different initialisation"
        )


def batch_bounds(n_train: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, end) of each batch of an epoch. A last batch of a single sample is merged into
    the one before: batchnorm cannot train on one sample, and its gradient is mostly noise."""
    starts = list(range(0, n_train, batch_size))
    if len(starts) > 1 and n_train - starts[-1] == 1:
        starts.pop()
    return [(s, e) for s, e in zip(starts, [*starts[1:], n_train], strict=True)]


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return len(batch_bounds(n_train, batch_size))


def train(
    spec: JobSpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    data: TrainData,
    callbacks: list[Callback],
    *,
    scheduler: Scheduler | None = None,
    resume: LoopState | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """Train for spec.training.epochs and return the final metrics (test ones included).

    `scheduler` defaults to the spec's schedule, built here; `resume` is the state restored
    from a checkpoint (worker/checkpoints.py), its scheduler included. When
    `should_stop` turns true, the loop stops at the next step boundary, lets the callbacks
    checkpoint (on_preempt) and raises Preempted.
    """
    cfg = spec.training
    n = len(data.x_train)
    bounds = batch_bounds(n, cfg.batch_size)
    per_epoch = len(bounds)
    log_every = cfg.log_every_steps or max(1, math.ceil(per_epoch / 50))
    classification = data.task == "classification"
    device = data.x_train.device
    state = resume or LoopState(model, optimizer, torch.Generator().manual_seed(cfg.seed))
    state.total_steps, state.epochs = per_epoch * cfg.epochs, cfg.epochs
    if state.scheduler is None:
        if resume is not None and spec.schedule.type != "constant":
            # Built now, it would start the schedule over and reset the restored rates.
            raise ValueError("pass the scheduler to restore_loop_state to resume a schedule")
        state.scheduler = scheduler or build_scheduler(spec.schedule, optimizer, per_epoch,
                                                       cfg.epochs)
    schedule = state.scheduler
    augment = build_augmenter(spec.dataset, data.task, data.num_classes)
    probe = LayerProbe(model)

    metrics: dict[str, float] = {}
    first_epoch = state.epoch if state.in_epoch.order is not None else state.epoch + 1
    for epoch in range(first_epoch, cfg.epochs + 1):
        state.epoch = epoch
        progress = state.in_epoch
        if progress.order is None:
            progress.start(torch.randperm(n, generator=state.shuffle).to(device))
        model.train()
        started = time.perf_counter() - progress.elapsed_s
        for b in range(progress.batch, per_epoch):
            start, end = bounds[b]
            idx = progress.order[start:end]
            xb, yb = data.x_train[idx], data.y_train[idx]
            xb, target = augment(xb, yb) if augment else (xb, yb)
            out = model(xb)
            loss = loss_fn(out, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            probing = b == per_epoch - 1  # per-layer statistics at each epoch's last step
            if probing:
                probe.after_backward()
            optimizer.step()
            if probing:
                layer_stats = probe.after_step()
            lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            schedule.after_step()
            state.step += 1
            progress.batch = b + 1
            batch_loss = loss.detach() * len(idx)
            progress.loss_sum += batch_loss
            progress.window_loss += batch_loss
            progress.window_count += len(idx)
            if classification:
                progress.correct += batch_correct(out.detach(), yb, data.task)
            if state.step % log_every == 0 or b == per_epoch - 1:
                # The only host sync in the step loop, at a bounded rate.
                value = (progress.window_loss / progress.window_count).item()
                _check_finite(value, state.step, lr)
                _emit(callbacks, state, [Point("train_loss_step", value, state.step, epoch),
                                         Point("lr", lr, state.step, epoch)])
                progress.window_loss.zero_()
                progress.window_count = 0
            if should_stop is not None and b < per_epoch - 1 and should_stop():
                progress.elapsed_s = time.perf_counter() - started
                _preempt(callbacks, state)
        elapsed = time.perf_counter() - started
        metrics = {
            "train_loss": (progress.loss_sum / n).item(),
            "samples_per_s": n / elapsed if elapsed > 0 else 0.0,
        }
        if classification:
            metrics["train_accuracy"] = progress.correct.item() / n
        metrics |= layer_stats
        state.in_epoch = EpochProgress()
        if data.x_val is not None:
            metrics |= evaluate(model, loss_fn, data.x_val, data.y_val, data.task).as_metrics("val")
        _emit(callbacks, state, [Point(k, v, state.step, epoch) for k, v in metrics.items()])
        # Stepped before the callbacks checkpoint, so the checkpoint holds the next epoch's
        # rate. `lr` was logged with train_loss_step; the epoch's metrics name the last rate.
        schedule.after_epoch(metrics)
        metrics["lr"] = lr
        for callback in callbacks:
            callback.on_epoch_end(state, metrics)
        if should_stop is not None and epoch < cfg.epochs and should_stop():
            _preempt(callbacks, state)

    final = dict(metrics)
    if data.x_test is not None:
        test = evaluate(model, loss_fn, data.x_test, data.y_test, data.task).as_metrics("test")
        final |= test
        _emit(callbacks, state, [Point(k, v, state.step, state.epoch) for k, v in test.items()])
    for callback in callbacks:
        callback.on_train_end(state, final)
    return final


def _preempt(callbacks: list[Callback], state: LoopState) -> None:
    for callback in callbacks:
        callback.on_preempt(state)
    raise Preempted(f"stopped at step {state.step} on request")


def _emit(callbacks: list[Callback], state: LoopState, points: list[Point]) -> None:
    for callback in callbacks:
        callback.on_points(state, points)
