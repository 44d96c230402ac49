"""`schedule`: how the learning rate changes over the job."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from core.specs.metrics import better_direction
from models.strict import StrictModel

ScheduleUnit = Literal["epoch", "step"]
Unit = Annotated[ScheduleUnit, Field(
    description="epoch: counts are epochs and the rate changes after each epoch; step: counts "
    "are optimizer steps and the rate changes after every step"
)]
Gamma = Annotated[float, Field(gt=0.0, le=1.0, description="multiplies the rate, in (0, 1]")]
# The validation metrics every job of a task records: what reduce_on_plateau and early
# stopping may watch (top-k accuracy exists only when asked for, so it is not among them).
VAL_METRICS = {"classification": ("val_loss", "val_accuracy"),
               "multilabel": ("val_loss", "val_accuracy", "val_exact_match"),
               "regression": ("val_loss", "val_rmse", "val_mae", "val_r2")}


class ConstantSchedule(StrictModel):
    type: Literal["constant"] = "constant"


class StepSchedule(StrictModel):
    type: Literal["step"]
    step_size: int = Field(ge=1, description="multiply the rate by gamma every step_size units")
    gamma: Gamma = 0.1
    unit: Unit = "epoch"


class MultiStepSchedule(StrictModel):
    type: Literal["multistep"]
    milestones: list[Annotated[int, Field(ge=1)]] = Field(
        min_length=1, max_length=100, description="units at which the rate is multiplied by gamma"
    )
    gamma: Gamma = 0.1
    unit: Unit = "epoch"

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"milestones must be strictly increasing; got {value}")
        return value


class ExponentialSchedule(StrictModel):
    type: Literal["exponential"]
    gamma: Gamma
    unit: Unit = "epoch"


class CosineSchedule(StrictModel):
    type: Literal["cosine"]
    t_max: int | None = Field(None, ge=1, description="half-period in units; null: the run")
    eta_min: float = Field(0.0, ge=0.0, le=10.0, description="the lowest rate")
    unit: Unit = "epoch"


class WarmupSchedule(StrictModel):
    type: Literal["warmup"]
    # Not `warmup`: a field named like the tag makes error paths read schedule.warmup.warmup.
    warmup_length: int = Field(ge=1, description="units of linear warm-up")
    start_factor: float | None = Field(
        None, ge=0.0, le=1.0, examples=[0.01],
        description="first rate / optimizer.lr. null: 1 / warmup_length, so that the first "
        "step already moves the weights (with 0 it does nothing)",
    )
    then: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="the decay over the rest of the run, down to eta_min"
    )
    eta_min: float = Field(0.0, ge=0.0, le=10.0, description="the rate at the end of the run")
    unit: Unit = "step"

    @property
    def first_factor(self) -> float:
        """start_factor, by default 1 / warmup_length: a warm-up from 0 spends its first step
        at a rate of 0. Resolved when the schedule is built, not stored, so that a copied
        spec with another warmup_length starts where its own ramp does."""
        return 1.0 / self.warmup_length if self.start_factor is None else self.start_factor


class OneCycleSchedule(StrictModel):
    type: Literal["one_cycle"]
    max_lr: float = Field(gt=0.0, le=10.0, description="the peak rate; > 0")
    pct_start: float = Field(0.3, gt=0.0, lt=1.0, description="share of the run spent rising")
    anneal: Literal["cos", "linear"] = Field(
        "cos", description="the shape of the rise and the fall: cosine or linear"
    )


class ReduceOnPlateauSchedule(StrictModel):
    type: Literal["reduce_on_plateau"]
    monitor: str = Field(
        "val_loss",
        description="a validation metric the task records: val_loss; val_accuracy "
        "(classification and multi-label; multi-label also val_exact_match); val_rmse, val_mae "
        "or val_r2 (regression)",
    )
    mode: Literal["min", "max"] | None = Field(
        None, description="null: max for accuracies, exact_match and r2, min otherwise"
    )
    factor: float = Field(0.1, gt=0.0, lt=1.0, description="multiplies the rate, in (0, 1)")
    patience: int = Field(10, ge=0, description="epochs without improvement before reducing")
    threshold: float = Field(1e-4, ge=0.0, description="the least change that counts")
    threshold_mode: Literal["rel", "abs"] = Field(
        "rel", description="rel: threshold is a share of the best value; abs: an amount"
    )
    cooldown: int = Field(0, ge=0, description="epochs to wait after a reduction")
    min_lr: float = Field(0.0, ge=0.0, le=10.0, description="the rate is never reduced below")

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        return self.mode or ("max" if better_direction(self.monitor) == "max" else "min")


ScheduleSpec = Annotated[
    ConstantSchedule | StepSchedule | MultiStepSchedule | ExponentialSchedule | CosineSchedule
    | WarmupSchedule | OneCycleSchedule | ReduceOnPlateauSchedule,
    Field(discriminator="type"),
]
