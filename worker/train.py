"""The training loop. It knows nothing of databases or brokers: persistence lives in the
callbacks passed in (worker/callbacks.py), so the loop runs on a CPU in a test with a toy
network and a list as its sink.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from core.jobspec import JobSpec
from worker.data import TrainData

EVAL_BATCH = 4096


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the job fails with advice instead of a traceback."""


@dataclass
class LoopState:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    shuffle: torch.Generator
    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    epochs: int = 0


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


@dataclass
class Evaluation:
    loss: float
    accuracy: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor,
             task: str) -> Evaluation:
    model.eval()
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(x), EVAL_BATCH):
        xb, yb = x[start:start + EVAL_BATCH], y[start:start + EVAL_BATCH]
        out = model(xb)
        total_loss += loss_fn(out, yb) * len(xb)
        if task == "classification":
            correct += (out.argmax(dim=1) == yb).sum()
    loss = (total_loss / len(x)).item()
    if task == "classification":
        return Evaluation(loss, correct.item() / len(x))
    return Evaluation(loss, extra={"rmse": math.sqrt(loss)})


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
) -> dict[str, float]:
    """Train for spec.training.epochs and return the final metrics (test ones included)."""
    cfg = spec.training
    n = len(data.x_train)
    bounds = batch_bounds(n, cfg.batch_size)
    per_epoch = len(bounds)
    log_every = cfg.log_every_steps or max(1, math.ceil(per_epoch / 50))
    classification = data.task == "classification"
    device = data.x_train.device
    state = LoopState(model, optimizer, torch.Generator().manual_seed(cfg.seed),
                      total_steps=per_epoch * cfg.epochs, epochs=cfg.epochs)

    metrics: dict[str, float] = {}
    for epoch in range(1, cfg.epochs + 1):
        state.epoch = epoch
        model.train()
        started = time.perf_counter()
        order = torch.randperm(n, generator=state.shuffle).to(device)
        epoch_loss = torch.zeros((), device=device)
        window_loss = torch.zeros((), device=device)
        window_count = 0
        correct = torch.zeros((), device=device, dtype=torch.long)
        for b, (start, end) in enumerate(bounds):
            idx = order[start:end]
            xb, yb = data.x_train[idx], data.y_train[idx]
            out = model(xb)
            loss = loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state.step += 1
            batch_loss = loss.detach() * len(idx)
            epoch_loss += batch_loss
            window_loss += batch_loss
            window_count += len(idx)
            if classification:
                correct += (out.detach().argmax(dim=1) == yb).sum()
            if state.step % log_every == 0 or b == per_epoch - 1:
                # The only host sync in the step loop, at a bounded rate.
                value = (window_loss / window_count).item()
                _check_finite(value, state.step, optimizer.param_groups[0]["lr"])
                _emit(callbacks, state, [Point("train_loss_step", value, state.step, epoch)])
                window_loss.zero_()
                window_count = 0
        elapsed = time.perf_counter() - started
        metrics = {
            "train_loss": (epoch_loss / n).item(),
            "lr": optimizer.param_groups[0]["lr"],
            "samples_per_s": n / elapsed if elapsed > 0 else 0.0,
        }
        if classification:
            metrics["train_accuracy"] = correct.item() / n
        if data.x_val is not None:
            val = evaluate(model, loss_fn, data.x_val, data.y_val, data.task)
            metrics["val_loss"] = val.loss
            if val.accuracy is not None:
                metrics["val_accuracy"] = val.accuracy
            metrics.update({f"val_{k}": v for k, v in val.extra.items()})
        _emit(callbacks, state, [Point(k, v, state.step, epoch) for k, v in metrics.items()])
        for callback in callbacks:
            callback.on_epoch_end(state, metrics)

    final = dict(metrics)
    if data.x_test is not None:
        test = evaluate(model, loss_fn, data.x_test, data.y_test, data.task)
        final["test_loss"] = test.loss
        if test.accuracy is not None:
            final["test_accuracy"] = test.accuracy
        final.update({f"test_{k}": v for k, v in test.extra.items()})
        _emit(callbacks, state, [Point(k, final[k], state.step, state.epoch)
                                 for k in final if k.startswith("test_")])
    for callback in callbacks:
        callback.on_train_end(state, final)
    return final


def _emit(callbacks: list[Callback], state: LoopState, points: list[Point]) -> None:
    for callback in callbacks:
        callback.on_points(state, points)
