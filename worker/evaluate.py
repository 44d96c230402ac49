"""What the loop measures: correct predictions in a batch, and a split's loss and metrics.

The task string and the network's output width say how to read the output, without the
loss: on a "classification" set a single output is a binary bce_with_logits logit
(validation allows one output there only with that loss), wider outputs are class logits;
on a "multilabel" set each output is one label's logit. A logit above 0 predicts 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from models.losses import mean_weight

EVAL_BATCH = 4096
ACCURACY_TASKS = ("classification", "multilabel")  # the tasks count_correct counts


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


def predicted_class(out: torch.Tensor) -> torch.Tensor:
    """Class labels (n,) from a classification network's output (n, C), or (n, 1) for a
    binary bce_with_logits network."""
    if out.shape[1] == 1:
        return (out[:, 0] > 0).long()
    return out.argmax(dim=1)


def label_hits(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n, L) booleans: which multi-label decisions (logit > 0) match the 0/1 targets."""
    return _decisions_right(out > 0, y)


def _decisions_right(decided: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return decided == (y > 0.5)


def batch_predictions(out: torch.Tensor, task: str) -> torch.Tensor | None:
    """What the training loop keeps of a batch's output to count its right answers later, in
    one operation and without a host sync: class labels (n,) for classification, the (n, L)
    decisions (logit > 0) for multi-label, None for the tasks without accuracy."""
    if task == "classification":
        return predicted_class(out)
    if task == "multilabel":
        return out > 0
    return None


def count_correct(predicted: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """How many of batch_predictions' answers are right, as a 0-d tensor on their device.
    Classification: right samples. Multi-label: right label decisions / L, so that dividing
    by the number of samples gives per-label accuracy as for classification."""
    if task == "multilabel":
        return _decisions_right(predicted, y).sum() / predicted.shape[1]
    return (predicted == y).sum()


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor,
             task: str, *, top_k: int | None = None, batch_size: int | None = None
             ) -> Evaluation:
    """The split's mean loss and the task's metrics: accuracy (and `top<k>_accuracy` when
    top_k is given) for classification; per-label accuracy and exact_match for multi-label;
    rmse, mae and r2 (averaged over outputs, as scikit-learn's r2_score) for regression."""
    model.eval()
    total_loss = torch.zeros((), device=x.device)
    total_weight = torch.zeros((), device=x.device)
    sums: dict[str, torch.Tensor] = {}

    def add(name: str, value: torch.Tensor) -> None:
        sums[name] = sums[name] + value if name in sums else value

    batch = batch_size or EVAL_BATCH  # the loop's, sized to its memory (core/memory_estimate)
    for start in range(0, len(x), batch):
        xb, yb = x[start:start + batch], y[start:start + batch]
        out = model(xb)
        weight = mean_weight(loss_fn, yb)
        total_loss += loss_fn(out, yb) * weight
        total_weight += weight
        if task == "classification":
            add("correct", (predicted_class(out) == yb).sum())
            if top_k is not None:
                top = out.topk(top_k, dim=1).indices
                add("top_k", (top == yb[:, None]).any(dim=1).sum())
        elif task == "multilabel":
            hits = label_hits(out, yb)
            add("label_hits", hits.sum())
            add("exact", hits.all(dim=1).sum())
        else:
            # Whatever the loss (mse, l1 or huber), all three are recorded.
            error = (out - yb).float()
            add("squared", error.square().sum(dim=0))
            add("absolute", error.abs().sum())
    loss = (total_loss / total_weight).item()
    n = len(x)
    if task == "classification":
        extra = {f"top{top_k}_accuracy": sums["top_k"].item() / n} if top_k is not None else {}
        return Evaluation(loss, sums["correct"].item() / n, extra)
    if task == "multilabel":
        return Evaluation(loss, sums["label_hits"].item() / y.numel(),
                          {"exact_match": sums["exact"].item() / n})
    squared = sums["squared"]
    return Evaluation(loss, extra={
        "rmse": math.sqrt(squared.sum().item() / y.numel()),
        "mae": sums["absolute"].item() / y.numel(),
        "r2": _r2(squared, y),
    })


def _r2(squared_error: torch.Tensor, y: torch.Tensor) -> float:
    """1 - residual / total sum of squares per output, averaged over outputs. An output whose
    targets are all equal scores 1 when predicted exactly and 0 otherwise (scikit-learn's
    choice), rather than dividing by zero."""
    y = y.float().reshape(len(y), -1)
    total = (y - y.mean(dim=0)).square().sum(dim=0)
    residual = squared_error.reshape(-1)
    constant = total == 0
    score = torch.where(constant, (residual == 0).float(),
                        1 - residual / torch.where(constant, 1.0, total))
    return score.mean().item()
