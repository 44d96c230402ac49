"""Loss modules from the spec's `loss` section.

The section's classes live in core/specs/loss.py; this module reads only their fields, so
the API (validation, gradient checks) and the worker (training) build the same loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropy(nn.Module):
    """F.cross_entropy with optional class weights. The weights follow the logits' device and
    dtype at each call: the loss is built before the network is placed on a device, and a
    gradient check runs in float64."""

    def __init__(self, label_smoothing: float, weight: list[float] | None) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", None if weight is None else torch.tensor(weight))

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(out.device, out.dtype)
        return F.cross_entropy(out, target, weight=weight, label_smoothing=self.label_smoothing)


def mean_weight(loss_fn: nn.Module, target: torch.Tensor) -> torch.Tensor | int:
    """What a batch's mean loss is divided by: the sum of the targets' class weights for a
    weighted cross_entropy with class labels, else the number of samples. Batches' means
    weighted by it combine into the exact mean over a whole split."""
    if isinstance(loss_fn, CrossEntropy) and loss_fn.weight is not None and target.dim() == 1:
        return loss_fn.weight.to(target.device)[target].sum()
    return len(target)


class BCEWithLogits(nn.Module):
    """F.binary_cross_entropy_with_logits on the dataset's targets as they come: binary class
    labels (n,) of integers 0/1 become float (n, 1) to match the network's single output;
    multi-label targets (n, L) of 0/1 are cast to the output's dtype. pos_weight follows the
    output's device and dtype, as CrossEntropy's weights do."""

    def __init__(self, pos_weight: float | list[float] | None) -> None:
        super().__init__()
        weights = [pos_weight] if isinstance(pos_weight, int | float) else pos_weight
        # A single weight has shape (1,) and broadcasts over every output.
        self.register_buffer("pos_weight",
                             None if weights is None else torch.tensor(weights))

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == 1:
            target = target.unsqueeze(1)
        elif out.shape[1] == 1 and target.shape[1] == 2:
            # Soft one-hot targets over the 2 classes (mixup): class 1's share is the target.
            target = target[:, 1:]
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(out.device,
                                                                             out.dtype)
        return F.binary_cross_entropy_with_logits(out, target.to(out.dtype),
                                                  pos_weight=pos_weight)


def build_loss(loss: Any) -> nn.Module:
    """`loss` is the JobSpec's loss section (core/specs/loss.py)."""
    if loss.type == "cross_entropy":
        return CrossEntropy(loss.label_smoothing, loss.weight)
    if loss.type == "bce_with_logits":
        return BCEWithLogits(loss.pos_weight)
    if loss.type == "mse":
        return nn.MSELoss()
    if loss.type == "l1":
        return nn.L1Loss()
    if loss.type == "huber":
        return nn.HuberLoss(delta=loss.delta)
    raise ValueError(f"unknown loss {loss.type!r}")  # the spec's union rules this out
