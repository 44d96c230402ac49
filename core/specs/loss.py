"""`loss`: what the network is trained to minimise."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from models.strict import StrictModel

Weight = Annotated[float, Field(gt=0.0, le=1e6)]


class CrossEntropyLoss(StrictModel):
    type: Literal["cross_entropy"]
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of the target mass spread over all classes"
    )
    weight: list[Weight] | None = Field(
        None, min_length=2, max_length=1000,
        description="one weight (> 0) per class, in class order, multiplying that class's "
        "share of the loss: raise the weight of rare classes to counter imbalance. The batch "
        "loss is the weighted mean (divided by the sum of the batch's weights, as torch "
        "does). Its length must equal the dataset's number of classes; null: every class "
        "weighs 1",
        examples=[[1.0, 3.0, 1.0]],
    )


class BCEWithLogitsLoss(StrictModel):
    type: Literal["bce_with_logits"]
    pos_weight: float | list[float] | None = Field(
        None,
        description="weight (> 0) of the positive term of each output's loss, for imbalance: "
        "about negatives / positives. A number applies to every output; a list gives one "
        "per output (1 for a binary dataset, one per label for a multi-label one); "
        "null: 1",
        examples=[3.0, [1.0, 2.5, 1.0, 4.0]],
    )

    @field_validator("pos_weight", mode="before")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        # Checked here rather than by the union's members: their errors would name both
        # members (`pos_weight.constrained-float`, `pos_weight.list[...]`) instead of the field.
        if value is None:
            return value
        if isinstance(value, list) and not 1 <= len(value) <= 1000:
            raise ValueError(
                f"give a number, or a list of 1 to 1000 numbers; got a list of {len(value)}"
            )
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            number = isinstance(item, int | float) and not isinstance(item, bool)
            if not number or not math.isfinite(item) or not 0 < item <= 1e6:
                where = f"entry {i} is" if isinstance(value, list) else "got"
                raise ValueError(
                    f"must be a number above 0 (at most 1e6) or a list of them, one per "
                    f"output; {where} {item!r}"
                )
        return value


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
    CrossEntropyLoss | BCEWithLogitsLoss | MSELoss | L1Loss | HuberLoss,
    Field(discriminator="type"),
]
REGRESSION_LOSSES = ("mse", "l1", "huber")
# Which dataset tasks each loss trains. bce_with_logits on a classification set is binary:
# validation also requires 2 classes and a single output.
LOSS_TASKS = {
    "cross_entropy": ("classification",),
    "bce_with_logits": ("classification", "multilabel"),
    **{name: ("regression",) for name in REGRESSION_LOSSES},
}


def losses_for(task: str, num_classes: int | None) -> tuple[str, ...]:
    """The losses that fit a dataset, for messages that say what to use instead."""
    fit = tuple(name for name, tasks in LOSS_TASKS.items() if task in tasks)
    if task == "classification" and num_classes != 2:
        fit = tuple(name for name in fit if name != "bce_with_logits")
    return fit
