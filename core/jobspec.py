"""The JobSpec: everything a job needs, as data. Unknown fields are rejected everywhere.

`validate_job` checks what pydantic alone cannot: shapes (the network is built on the meta
device against the dataset's input shape), then the sections against each other and the
server's limits (core/checks.py). Every failure names the field path and says what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pydantic import Field

from core import checks, datasets
from core.settings import Settings
from core.specs.dataset import DatasetSpec
from core.specs.loss import CrossEntropyLoss, LossSpec
from core.specs.metrics import MetricsSpec
from core.specs.optimizer import AdamSpec, OptimizerSpec
from core.specs.regularization import RegularizationSpec
from core.specs.schedule import ConstantSchedule, ScheduleSpec
from core.specs.training import ResourcesSpec, TrainingSpec
from models.build import ModelSummary, SpecError, summarize
from models.spec import ModelSpec
from models.strict import StrictModel


class JobSpec(StrictModel):
    name: str = Field("", max_length=200, description="a label; defaults to '<dataset>-job'")
    dataset: DatasetSpec = Field(description="which data to train on and how to prepare it")
    model: ModelSpec = Field(description="the network: its layers and their initialisation")
    loss: LossSpec = Field(
        default_factory=lambda: CrossEntropyLoss(type="cross_entropy"),
        description="what the network is trained to minimise; it must fit the dataset's task",
    )
    optimizer: OptimizerSpec = Field(
        default_factory=lambda: AdamSpec(type="adam"), description="how the weights are updated"
    )
    schedule: ScheduleSpec = Field(
        default_factory=ConstantSchedule, description="how the learning rate changes over the job"
    )
    training: TrainingSpec = Field(
        default_factory=TrainingSpec,
        description="how long, in what batches and precision, when to evaluate and stop",
    )
    regularization: RegularizationSpec = Field(
        default_factory=RegularizationSpec,
        description="the L1 penalty and gradient clipping (weight decay is the optimizer's, "
        "dropout a layer)",
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="where the job trains"
    )
    metrics: MetricsSpec = Field(default_factory=MetricsSpec, description="extra metrics to record")
    max_attempts: int | None = Field(None, ge=1, le=20, description="default from settings")
    gradcheck: bool = Field(
        False,
        description="before training, compare autograd with numerical gradients on a small "
        "training batch (see POST /v1/gradcheck); the report lands in summary.gradcheck and a "
        "'wrong' verdict fails the job",
    )

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
        cfg = self.spec.training
        batches = math.ceil(self.n_train / cfg.batch_size)
        steps = math.ceil(batches / cfg.accumulate_batches) * cfg.epochs
        return min(steps, cfg.max_steps) if cfg.max_steps else steps

    def model_report(self) -> dict:
        return {**self.model.as_dict(), "warnings": self.warnings}


def validate_job(spec: JobSpec, settings: Settings) -> ValidatedJob:
    """Check shapes, loss and limits; raises SpecError naming the field to change."""
    checks.limits(spec, settings)
    info = datasets.describe(spec.dataset.name, spec.dataset.options())
    summary = summarize(spec.model, info.input_shape)
    if summary.total_params > settings.max_params:
        raise SpecError(
            "model",
            f"the network has {summary.total_params:,} parameters; this server allows at most "
            f"{settings.max_params:,}: use fewer or smaller layers",
        )
    checks.output(spec, info, summary)
    checked = ValidatedJob(spec, info, summary)
    checks.schedule(checked)
    checks.training(checked)
    checks.augment(checked)
    checked.warnings = checks.warnings(checked)
    return checked
