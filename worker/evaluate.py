"""What the loop measures: correct predictions in a batch, and a split's loss and metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

EVAL_BATCH = 4096


@dataclass
class Evaluation:
    loss: float
    accuracy: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def as_metrics(self, split: str) -> dict[str, float]:
        """`val_loss`, `val_accuracy`, `val_rmse`, ... for split "val"."""
        named = {"loss": self.loss, **({"accuracy": self.accuracy} if self.accuracy is not None
                                       else {}), **self.extra}
        return {f"{split}_{name}": value for name, value in named.items()}


def batch_correct(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """How many predictions in the batch are right, as a 0-d tensor on the batch's device
    (no host sync). Only classification counts; other tasks return zero."""
    if task == "classification":
        return (out.argmax(dim=1) == y).sum()
    return torch.zeros((), device=out.device, dtype=torch.long)


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor,
             task: str) -> Evaluation:
    model.eval()
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    squared_error = torch.zeros((), device=x.device)
    for start in range(0, len(x), EVAL_BATCH):
        xb, yb = x[start:start + EVAL_BATCH], y[start:start + EVAL_BATCH]
        out = model(xb)
        total_loss += loss_fn(out, yb) * len(xb)
        if task == "classification":
            correct += batch_correct(out, yb, task)
        else:
            # rmse whatever the loss: the loss may be l1 or huber.
            squared_error += (out - yb).square().sum()
    loss = (total_loss / len(x)).item()
    if task == "classification":
        return Evaluation(loss, correct.item() / len(x))
    return Evaluation(loss, extra={"rmse": math.sqrt(squared_error.item() / y.numel())})
