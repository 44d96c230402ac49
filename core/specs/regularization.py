"""`regularization`: the penalties and limits that are not the optimizer's weight decay or a
dropout layer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from models.strict import StrictModel


class ClipGradSpec(StrictModel):
    """Clip the gradients before each optimizer step; the total norm before clipping is logged
    as `grad_norm`."""

    by: Literal["norm", "value"] = Field(
        "norm",
        description="norm: rescale all gradients together so their L2 norm is at most max; "
        "value: clamp each element to [-max, max]",
    )
    max: float = Field(gt=0.0, le=1e6, description="the largest norm or value allowed")


class RegularizationSpec(StrictModel):
    l1: float = Field(
        0.0, ge=0.0, le=10.0,
        description="coefficient of the L1 penalty l1 * sum(|w|) added to the loss, over the "
        "weights of linear, conv and maxout layers (not biases, not normalisation layers); "
        "logged as l1_penalty, not counted in train_loss",
    )
    clip_grad: ClipGradSpec | None = Field(None, description="null: no clipping")
