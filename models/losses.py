"""Loss modules from the spec's `loss` section.

The section's classes live in core/specs/loss.py; this module reads only their fields, so
the API (validation, gradient checks) and the worker (training) build the same loss.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def build_loss(loss: Any) -> nn.Module:
    """`loss` is the JobSpec's loss section (core/specs/loss.py)."""
    if loss.type == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=loss.label_smoothing)
    if loss.type == "mse":
        return nn.MSELoss()
    if loss.type == "l1":
        return nn.L1Loss()
    if loss.type == "huber":
        return nn.HuberLoss(delta=loss.delta)
    raise ValueError(f"unknown loss {loss.type!r}")  # the spec's union rules this out
