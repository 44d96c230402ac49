"""`lr_find`: the learning-rate range test a job runs in `mode: "lr_find"` instead of training.

The rate rises exponentially from start_lr to end_lr over `steps` optimizer steps; the test
stops early once the smoothed loss passes stop_factor times its best. The defaults are
fastai's (`Learner.lr_find`), so that its advice and its plots read the same here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from models.strict import StrictModel

SuggestionRule = Literal["valley", "steep", "minimum"]
RULES: tuple[str, ...] = ("valley", "steep", "minimum")


class LrFindSpec(StrictModel):
    start_lr: float = Field(
        1e-7, gt=0, le=1.0, description="the rate of the first step",
    )
    end_lr: float = Field(
        10.0, gt=0, le=1000.0,
        description="the rate of the last step; above start_lr (each step multiplies the rate "
        "by (end_lr / start_lr) ** (1 / (steps - 1)))",
    )
    steps: int = Field(
        100, ge=20, le=10_000,
        description="optimizer steps, one batch each; the training split is cycled, reshuffled "
        "each pass, when it has fewer batches",
    )
    smoothing: float = Field(
        0.98, ge=0.0, lt=1.0,
        description="the loss's exponential moving average factor, bias-corrected (fastai's "
        "0.98); 0: the raw loss",
    )
    stop_factor: float | None = Field(
        4.0, gt=1.0, le=1000.0,
        description="stop once the smoothed loss exceeds this many times its lowest value; "
        "null: run every step (a non-finite loss still stops the test)",
    )
    suggestion: SuggestionRule = Field(
        "valley",
        description="the rule whose rate is summary.lr_find.suggested_lr: valley (the middle "
        "of the longest descending stretch of the curve), steep (the steepest descent against "
        "log rate) or minimum (a tenth of the rate at the lowest loss); all three are reported",
    )

    @field_validator("end_lr")
    @classmethod
    def _above_start(cls, value: float, info: ValidationInfo) -> float:
        start = info.data.get("start_lr")
        if start is not None and value <= start:
            raise ValueError(
                f"end_lr ({value:g}) must be above start_lr ({start:g}): the test raises the "
                "rate from start_lr to end_lr"
            )
        return value
