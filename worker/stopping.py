"""Early stopping: watch a validation metric, keep the best weights, say when to stop."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class EarlyStopper:
    """Call `update` after every evaluation. Its state (best value, evaluations since, best
    weights) goes into the checkpoint, so a resumed run stops where an uninterrupted one would."""

    def __init__(self, monitor: str, mode: str, patience: int, min_delta: float,
                 restore_best: bool) -> None:
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.restore_best = min_delta, restore_best
        self.best: float | None = None
        self.best_step = 0
        self.best_epoch = 0
        self.since_best = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, metrics: dict[str, float], model: nn.Module, step: int, epoch: int) -> bool:
        """Record an evaluation; True when training should stop."""
        value = metrics[self.monitor]
        if self._improved(value):
            self.best, self.best_step, self.best_epoch, self.since_best = value, step, epoch, 0
            if self.restore_best:
                self.best_weights = {k: v.detach().clone() for k, v in
                                     model.state_dict().items()}
            return False
        self.since_best += 1
        return self.since_best >= self.patience

    def restore(self, model: nn.Module) -> bool:
        """Put the best weights back; False when there is nothing to restore."""
        if not self.restore_best or self.best_weights is None:
            return False
        model.load_state_dict(self.best_weights)
        return True

    def describe_stop(self, step: int, epoch: int) -> str:
        restored = (f"; restored the weights of step {self.best_step}"
                    if self.restore_best and self.best_weights is not None else "")
        return (f"early stopping at epoch {epoch} (step {step}): {self.monitor} did not improve "
                f"by more than {self.min_delta:g} for {self.patience} evaluations; best "
                f"{self.best:.6g} at epoch {self.best_epoch} (step {self.best_step}){restored}")

    def state_dict(self) -> dict[str, Any]:
        weights = ({k: v.cpu() for k, v in self.best_weights.items()}
                   if self.best_weights is not None else None)
        return {"best": self.best, "best_step": self.best_step, "best_epoch": self.best_epoch,
                "since_best": self.since_best, "best_weights": weights}

    def load_state_dict(self, saved: dict[str, Any] | None, device: torch.device) -> None:
        if not saved:
            return
        self.best, self.best_step = saved["best"], saved["best_step"]
        self.best_epoch, self.since_best = saved["best_epoch"], saved["since_best"]
        weights = saved["best_weights"]
        self.best_weights = ({k: v.to(device) for k, v in weights.items()}
                             if weights is not None else None)
