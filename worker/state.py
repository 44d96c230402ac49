"""What the training loop carries and checkpoints, and what it tells its callbacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from core.points import Point
from worker.schedules import Scheduler
from worker.stopping import EarlyStopper


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
    # The latest validation metrics from a mid-epoch evaluation (training.eval_every_steps),
    # handed to the epoch's end (checkpoint, reduce_on_plateau) without being logged twice.
    pending_val: dict[str, float] = field(default_factory=dict)
    # Batches trained since the sums above were last brought up to date (settle): their mean
    # losses and sizes, predictions and labels. A step only appends; each reduction is one
    # operation per log window instead of six per step, which on a small network was a
    # seventh of the step's time.
    losses: list[torch.Tensor] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    predictions: list[torch.Tensor] = field(default_factory=list)
    labels: list[torch.Tensor] = field(default_factory=list)

    def add_batch(self, loss: torch.Tensor, size: int, predicted: torch.Tensor | None,
                  labels: torch.Tensor) -> None:
        self.losses.append(loss)
        self.sizes.append(size)
        self.window_count += size
        if predicted is not None:
            self.predictions.append(predicted)
            self.labels.append(labels)

    def settle(self, count_correct: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
               ) -> None:
        """Fold the batches added since the last call into loss_sum, window_loss and correct."""
        if self.losses:
            losses = torch.stack(self.losses).float()
            sizes = torch.tensor(self.sizes, dtype=losses.dtype, device=losses.device)
            total = torch.dot(losses, sizes)
            self.loss_sum += total
            self.window_loss += total
        if self.predictions:
            self.correct += count_correct(torch.cat(self.predictions), torch.cat(self.labels))
        self.losses, self.sizes, self.predictions, self.labels = [], [], [], []

    def start(self, order: torch.Tensor) -> None:
        device = order.device
        self.order, self.batch, self.window_count, self.elapsed_s = order, 0, 0, 0.0
        self.loss_sum = torch.zeros((), device=device)
        # float: a multi-label batch counts right label decisions / labels (exact to 2**24)
        self.correct = torch.zeros((), device=device)
        self.window_loss = torch.zeros((), device=device)
        self.pending_val = {}

    def as_dict(self) -> dict:
        """The progress as a checkpoint holds it. Batches not yet folded into the sums travel
        as they are, so that a resumed run folds its log window once, in the same order as an
        uninterrupted one: folding it in two parts rounds twice (an ulp off)."""
        if self.order is None:
            return {}
        saved = {"order": self.order.cpu(), "batch": self.batch,
                 "loss_sum": self.loss_sum.cpu(), "correct": self.correct.cpu(),
                 "window_loss": self.window_loss.cpu(), "window_count": self.window_count,
                 "elapsed_s": self.elapsed_s, "pending_val": dict(self.pending_val)}
        if self.losses:
            saved |= {"losses": torch.stack(self.losses).cpu(), "sizes": list(self.sizes)}
        if self.predictions:
            saved |= {"predictions": torch.cat(self.predictions).cpu(),
                      "labels": torch.cat(self.labels).cpu()}
        return saved

    @classmethod
    def from_dict(cls, saved: dict, device: torch.device) -> EpochProgress:
        if not saved:
            return cls()
        progress = cls(saved["order"].to(device), saved["batch"], saved["loss_sum"].to(device),
                       saved["correct"].to(device), saved["window_loss"].to(device),
                       saved["window_count"], saved["elapsed_s"], saved.get("pending_val", {}))
        if "losses" in saved:
            progress.losses = list(saved["losses"].to(device).unbind())
            progress.sizes = list(saved["sizes"])
        if "predictions" in saved:
            progress.predictions = [saved["predictions"].to(device)]
            progress.labels = [saved["labels"].to(device)]
        return progress


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
    stopper: EarlyStopper | None = None
    scaler: torch.amp.GradScaler | None = None
    # States read from a checkpoint for the parts the loop builds itself (stopper, scaler).
    restored: dict[str, Any] = field(default_factory=dict)
    # What the user should know about how the run went (fallbacks, early stopping).
    notes: list[str] = field(default_factory=list)


class Callback(Protocol):
    """The loop's hooks. One more is optional, called where a callback defines it:
    `on_exit(state, error)`, once on every way out of the loop (its end, a stop, or an
    exception, passed as `error`), after the other hooks. A callback that buffers writes what
    it holds there, so that a run that fails keeps what it logged up to its last step."""

    def on_points(self, state: LoopState, points: list[Point]) -> None: ...

    def on_epoch_end(self, state: LoopState, metrics: dict[str, float]) -> None: ...

    def on_train_end(self, state: LoopState, metrics: dict[str, float]) -> None: ...

    def on_preempt(self, state: LoopState) -> None: ...
