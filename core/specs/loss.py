"""`loss`: what the network is trained to minimise."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from models.spec import StrictModel


class CrossEntropyLoss(StrictModel):
    type: Literal["cross_entropy"]
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of the target mass spread over all classes"
    )


class MSELoss(StrictModel):
    type: Literal["mse"]


class L1Loss(StrictModel):
    type: Literal["l1"]


class HuberLoss(StrictModel):
    type: Literal["huber"]
    delta: float = Field(
        1.0, gt=0.0, le=1e6, description="where the loss turns from quadratic to linear"
    )


LossSpec = Annotated[
    CrossEntropyLoss | MSELoss | L1Loss | HuberLoss, Field(discriminator="type")
]
CLASSIFICATION_LOSSES = ("cross_entropy",)
REGRESSION_LOSSES = ("mse", "l1", "huber")
