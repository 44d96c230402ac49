"""The JobSpec: everything a job needs, as data. Unknown fields are rejected everywhere.

`validate_job` checks what pydantic alone cannot: shapes (the network is built on the meta
device against the dataset's input shape), the loss against the task, and the limits in
the settings. Every failure names the field path and says what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from core import datasets
from core.settings import Settings
from models.build import ModelSummary, SpecError, summarize
from models.spec import ModelSpec, StrictModel


class DatasetSpec(StrictModel):
    name: str = Field(description="a built-in dataset: digits, spirals, moons, blobs or sine")
    val_fraction: float = Field(
        0.1, ge=0.0, le=0.5, description="share of the training split held out for validation"
    )
    normalize: Literal["standardize", "none"] = Field(
        "standardize",
        description="standardize: per-feature mean and std from the training split only",
    )
    n_samples: int | None = Field(None, ge=20, le=1_000_000, description="synthetic sets only")
    noise: float | None = Field(None, ge=0.0, le=10.0, description="synthetic sets only")
    classes: int | None = Field(None, ge=2, le=100, description="spirals and blobs only")
    seed: int = Field(
        0, ge=0, le=2**31 - 1,
        description="generation and validation-split seed; the test split is fixed",
    )

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in datasets.BUILTINS:
            known = ", ".join(sorted(datasets.BUILTINS))
            raise ValueError(f"unknown dataset {value!r}; the built-in datasets are: {known}")
        return value

    @model_validator(mode="after")
    def _options_apply(self) -> DatasetSpec:
        tunable = datasets.BUILTINS[self.name].tunable
        for option in ("n_samples", "noise", "classes"):
            if getattr(self, option) is not None and option not in tunable:
                raise ValueError(f"{self.name} takes no {option}; remove it")
        return self

    def options(self) -> datasets.Options:
        return datasets.Options(self.n_samples, self.noise, self.classes, self.seed)


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

LearningRate = Annotated[float, Field(gt=0.0, le=10.0, description="learning rate, > 0")]
WeightDecay = Annotated[float, Field(ge=0.0, le=1.0, description="weight decay, >= 0")]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]
Eps = Annotated[float, Field(gt=0.0, le=1.0, description="added for numerical stability")]
ExcludeFromWeightDecay = Annotated[
    list[Literal["bias", "norm"]],
    Field(
        default_factory=list,
        max_length=2,
        description="bias: parameters named *bias; norm: normalisation layers' parameters. "
        "These get weight_decay 0.",
    ),
]


class SGDSpec(StrictModel):
    type: Literal["sgd"]
    lr: LearningRate = 0.01
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    dampening: float = Field(0.0, ge=0.0, le=1.0)
    weight_decay: WeightDecay = 0.0
    nesterov: bool = False
    exclude_from_weight_decay: ExcludeFromWeightDecay

    @field_validator("nesterov")
    @classmethod
    def _nesterov_applies(cls, value: bool, info: ValidationInfo) -> bool:
        # torch.optim.SGD raises for these at construction; say it here, naming the field.
        if not value:
            return value
        if info.data.get("momentum", 1.0) == 0:
            raise ValueError("nesterov needs momentum > 0; set optimizer.momentum or remove it")
        if info.data.get("dampening", 0.0) != 0:
            raise ValueError("nesterov needs dampening 0; set optimizer.dampening to 0")
        return value


class _AdamFamily(StrictModel):
    """Adam and its variants share their hyperparameters; only defaults differ."""

    lr: LearningRate = 0.001
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    eps: Eps = 1e-8
    weight_decay: WeightDecay = Field(0.0, description="an L2 penalty added to the gradient")
    exclude_from_weight_decay: ExcludeFromWeightDecay


class AdamSpec(_AdamFamily):
    type: Literal["adam"]


class AdamWSpec(_AdamFamily):
    type: Literal["adamw"]
    weight_decay: WeightDecay = Field(0.01, description="decoupled from the gradient")


class NAdamSpec(_AdamFamily):
    type: Literal["nadam"]
    lr: LearningRate = 0.002


class RAdamSpec(_AdamFamily):
    type: Literal["radam"]


class AdagradSpec(StrictModel):
    type: Literal["adagrad"]
    lr: LearningRate = 0.01
    lr_decay: float = Field(0.0, ge=0.0, le=1.0)
    weight_decay: WeightDecay = 0.0
    initial_accumulator_value: float = Field(0.0, ge=0.0, le=1e6)
    eps: Eps = 1e-10
    exclude_from_weight_decay: ExcludeFromWeightDecay


class AdadeltaSpec(StrictModel):
    type: Literal["adadelta"]
    lr: LearningRate = 1.0
    rho: float = Field(0.9, ge=0.0, lt=1.0)
    eps: Eps = 1e-6
    weight_decay: WeightDecay = 0.0
    exclude_from_weight_decay: ExcludeFromWeightDecay


class RMSpropSpec(StrictModel):
    type: Literal["rmsprop"]
    lr: LearningRate = 0.01
    alpha: float = Field(0.99, ge=0.0, lt=1.0, description="smoothing of the squared gradient")
    eps: Eps = 1e-8
    weight_decay: WeightDecay = 0.0
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    centered: bool = False
    exclude_from_weight_decay: ExcludeFromWeightDecay


OptimizerSpec = Annotated[
    SGDSpec | AdamSpec | AdamWSpec | NAdamSpec | RAdamSpec | AdagradSpec | AdadeltaSpec
    | RMSpropSpec,
    Field(discriminator="type"),
]


ScheduleUnit = Literal["epoch", "step"]
Unit = Annotated[ScheduleUnit, Field(
    description="epoch: counts are epochs and the rate changes after each epoch; step: counts "
    "are optimizer steps and the rate changes after every step"
)]
Gamma = Annotated[float, Field(gt=0.0, le=1.0, description="multiplies the rate, in (0, 1]")]
VAL_METRICS = {"classification": ("val_loss", "val_accuracy"),
               "regression": ("val_loss", "val_rmse")}


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
    start_factor: float = Field(0.0, ge=0.0, le=1.0, description="first rate / optimizer.lr")
    then: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="the decay over the rest of the run, down to eta_min"
    )
    eta_min: float = Field(0.0, ge=0.0, le=10.0, description="the rate at the end of the run")
    unit: Unit = "step"


class OneCycleSchedule(StrictModel):
    type: Literal["one_cycle"]
    max_lr: float = Field(gt=0.0, le=10.0, description="the peak rate; > 0")
    pct_start: float = Field(0.3, gt=0.0, lt=1.0, description="share of the run spent rising")
    anneal: Literal["cos", "linear"] = "cos"


class ReduceOnPlateauSchedule(StrictModel):
    type: Literal["reduce_on_plateau"]
    monitor: str = Field("val_loss", description="val_loss, val_accuracy or val_rmse")
    mode: Literal["min", "max"] | None = Field(
        None, description="null: max for val_accuracy, min otherwise"
    )
    factor: float = Field(0.1, gt=0.0, lt=1.0, description="multiplies the rate, in (0, 1)")
    patience: int = Field(10, ge=0, description="epochs without improvement before reducing")
    threshold: float = Field(1e-4, ge=0.0, description="the least change that counts")
    threshold_mode: Literal["rel", "abs"] = "rel"
    cooldown: int = Field(0, ge=0, description="epochs to wait after a reduction")
    min_lr: float = Field(0.0, ge=0.0, le=10.0)

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        return self.mode or ("max" if self.monitor.endswith("accuracy") else "min")


ScheduleSpec = Annotated[
    ConstantSchedule | StepSchedule | MultiStepSchedule | ExponentialSchedule | CosineSchedule
    | WarmupSchedule | OneCycleSchedule | ReduceOnPlateauSchedule,
    Field(discriminator="type"),
]


class TrainingSpec(StrictModel):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="initialisation, shuffling, dropout")
    checkpoint_every_epochs: int = Field(
        1, ge=0, description="0: only the final checkpoint"
    )
    log_every_steps: int | None = Field(
        None, ge=1, description="per-step train_loss interval; default ~50 points per epoch"
    )


class ResourcesSpec(StrictModel):
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when the worker has it, else CPU"
    )


class JobSpec(StrictModel):
    name: str = Field("", max_length=200, description="a label; defaults to '<dataset>-job'")
    dataset: DatasetSpec
    model: ModelSpec
    loss: LossSpec = Field(default_factory=lambda: CrossEntropyLoss(type="cross_entropy"))
    optimizer: OptimizerSpec = Field(default_factory=lambda: AdamSpec(type="adam"))
    schedule: ScheduleSpec = Field(default_factory=ConstantSchedule)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    max_attempts: int | None = Field(None, ge=1, le=20, description="default from settings")

    @property
    def display_name(self) -> str:
        return self.name or f"{self.dataset.name}-job"


@dataclass
class ValidatedJob:
    spec: JobSpec
    dataset: datasets.DatasetInfo
    model: ModelSummary
    warnings: list[str] = field(default_factory=list)

    @property
    def n_train(self) -> int:
        held_out = 1 - self.spec.dataset.val_fraction
        return int((self.dataset.n_samples - self.dataset.n_test) * held_out)

    @property
    def estimated_steps(self) -> int:
        """Optimizer steps for the whole job (the worker reports the exact number)."""
        return math.ceil(self.n_train / self.spec.training.batch_size) * self.spec.training.epochs

    def model_report(self) -> dict:
        return {**self.model.as_dict(), "warnings": self.warnings}


def validate_job(spec: JobSpec, settings: Settings) -> ValidatedJob:
    """Check shapes, loss and limits; raises SpecError naming the field to change."""
    _check_limits(spec, settings)
    info = datasets.describe(spec.dataset.name, spec.dataset.options())
    summary = summarize(spec.model, info.input_shape)
    if summary.total_params > settings.max_params:
        raise SpecError(
            "model",
            f"the network has {summary.total_params:,} parameters; this server allows at most "
            f"{settings.max_params:,}: use fewer or smaller layers",
        )
    _check_output(spec, info, summary)
    checked = ValidatedJob(spec, info, summary)
    _check_schedule(checked)
    checked.warnings = _warnings(checked)
    return checked


def _check_limits(spec: JobSpec, settings: Settings) -> None:
    if spec.training.epochs > settings.max_epochs:
        raise SpecError("training.epochs", f"at most {settings.max_epochs} on this server")
    if spec.training.batch_size > settings.max_batch_size:
        raise SpecError("training.batch_size", f"at most {settings.max_batch_size} on this server")
    if len(spec.model.layers) > settings.max_layers:
        raise SpecError("model.layers", f"at most {settings.max_layers} layers on this server")


def _check_output(spec: JobSpec, info: datasets.DatasetInfo, summary: ModelSummary) -> None:
    last = len(spec.model.layers) - 1
    where = f"model.layers[{last}] ({spec.model.layers[last].type})"
    out = summary.output_shape
    loss = spec.loss.type
    if loss in CLASSIFICATION_LOSSES:
        if info.task != "classification":
            raise SpecError(
                "loss.type",
                f"{loss} needs a classification dataset; {info.name} is regression: "
                f"use {_either(REGRESSION_LOSSES)}",
            )
        if out != (info.num_classes,):
            fix = (
                f"end with a linear layer with out_features {info.num_classes}"
                if len(out) == 1
                else f"add a flatten layer and a linear layer with out_features "
                f"{info.num_classes}"
            )
            raise SpecError(
                where,
                f"the network's output is {out} but {info.name} has {info.num_classes} "
                f"classes; {fix}",
            )
    elif loss in REGRESSION_LOSSES:
        if info.task != "regression":
            raise SpecError(
                "loss.type",
                f"{loss} needs a regression dataset; {info.name} is classification: "
                f"use {_either(CLASSIFICATION_LOSSES)}",
            )
        if out != info.target_shape:
            raise SpecError(
                where,
                f"the network's output is {out} but {info.name}'s targets are "
                f"{info.target_shape}; end with a linear layer with out_features "
                f"{info.target_shape[0]}",
            )


def _check_schedule(checked: ValidatedJob) -> None:
    """What the schedule needs from the rest of the spec: a run long enough, a validation
    split and a metric the task records."""
    spec, schedule = checked.spec, checked.spec.schedule
    if schedule.type == "warmup":
        epochs = spec.training.epochs
        run = epochs if schedule.unit == "epoch" else checked.estimated_steps
        if schedule.warmup_length > run:
            raise SpecError(
                "schedule.warmup_length",
                f"a warm-up of {schedule.warmup_length} {schedule.unit}s is longer than the run "
                f"({run} {schedule.unit}s); shorten it or train for longer",
            )
    if schedule.type == "reduce_on_plateau":
        if spec.dataset.val_fraction == 0:
            raise SpecError(
                "schedule.monitor",
                "reduce_on_plateau watches a validation metric but dataset.val_fraction is 0; "
                "set dataset.val_fraction above 0 or use another schedule",
            )
        known = VAL_METRICS[checked.dataset.task]
        if schedule.monitor not in known:
            raise SpecError(
                "schedule.monitor",
                f"{checked.dataset.name} records no {schedule.monitor!r}; use {_either(known)}",
            )


def _either(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _warnings(checked: ValidatedJob) -> list[str]:
    spec, n_train = checked.spec, checked.n_train
    notes = []
    if spec.training.batch_size > n_train:
        notes.append(
            f"training.batch_size {spec.training.batch_size} exceeds the training split "
            f"({n_train} samples): each epoch is a single step"
        )
    if spec.dataset.val_fraction == 0:
        notes.append("dataset.val_fraction is 0: no validation metrics will be recorded")
    return notes
