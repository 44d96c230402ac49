"""The JobSpec: everything a job needs, as data. Unknown fields are rejected everywhere.

`validate_job` checks what pydantic alone cannot: shapes (the network is built on the meta
device against the dataset's input shape), the loss against the task, and the limits in
the settings. Every failure names the field path and says what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pydantic import Field

from core import datasets
from core.settings import Settings
from core.specs.dataset import DatasetSpec
from core.specs.loss import CLASSIFICATION_LOSSES, REGRESSION_LOSSES, CrossEntropyLoss, LossSpec
from core.specs.optimizer import AdamSpec, OptimizerSpec
from core.specs.schedule import VAL_METRICS, ConstantSchedule, ScheduleSpec
from core.specs.training import ResourcesSpec, TrainingSpec
from models.build import ModelSummary, SpecError, summarize
from models.spec import ModelSpec, StrictModel


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
