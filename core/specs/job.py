"""The JobSpec: everything a job needs, as data, one section per module of core/specs.
Unknown fields are rejected everywhere; core/jobspec.py checks a spec against its dataset
and the server."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool, ValidationInfo, field_validator

from core.specs.dataset import DatasetSpec
from core.specs.loss import CrossEntropyLoss, LossSpec
from core.specs.lr_find import LrFindSpec
from core.specs.metrics import MetricsSpec
from core.specs.notify import NotifySpec
from core.specs.optimizer import AdamSpec, OptimizerSpec
from core.specs.preflight import PreflightSpec
from core.specs.regularization import RegularizationSpec
from core.specs.schedule import ConstantSchedule, ScheduleSpec
from core.specs.training import ResourcesSpec, TrainingSpec
from models.gradcheck import DEFAULT_EPS, MAX_EPS, MIN_EPS
from models.spec import ModelSpec
from models.strict import StrictModel


class JobSpec(StrictModel):
    name: str = Field("", max_length=200, description="a label; defaults to '<dataset>-job'")
    mode: Literal["train", "lr_find"] = Field(
        "train",
        description="train: train the network; lr_find: run a learning-rate range test on it "
        "instead (see lr_find) and report a suggested rate in summary.lr_find",
    )
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
    notify: NotifySpec | None = Field(
        None, description="POST a signed JSON event to a URL when the job changes state "
        "(docs/integration.md, Webhooks)",
    )
    preflight: PreflightSpec = Field(
        default_factory=PreflightSpec,
        description="checks on a copy of the network before training (the loss at "
        "initialisation, a gradient check, fitting 16 samples); the report lands in "
        "summary.preflight, and the run itself is the same as without them",
    )
    gradcheck: StrictBool = Field(
        False,
        description="before training, compare autograd with numerical gradients on a small "
        "training batch (see POST /v1/gradcheck), whatever preflight says; the full report "
        "lands in summary.gradcheck and a 'wrong' verdict fails the job",
    )
    gradcheck_eps: float = Field(
        DEFAULT_EPS, ge=MIN_EPS, le=MAX_EPS,
        description="the step of the gradient check's central differences, (f(θ+eps) − "
        "f(θ−eps)) / 2·eps in float64, for gradcheck and POST /v1/gradcheck; smaller steps "
        "meet rounding error, larger ones truncation error",
    )
    lr_find: LrFindSpec | None = Field(
        None, description="the range test's settings, read in mode lr_find only; null: the "
        "defaults (1e-7 to 10 over 100 steps, fastai's valley rule)",
    )

    @field_validator("lr_find")
    @classmethod
    def _only_when_finding(cls, value: LrFindSpec | None, info: ValidationInfo
                           ) -> LrFindSpec | None:
        # A mode that failed its own validation is absent here: its error is enough.
        if value is not None and info.data.get("mode") == "train":
            raise ValueError(
                'read only when mode is "lr_find": set mode to "lr_find" to run the range '
                "test, or remove lr_find to train"
            )
        return value

    @property
    def range_test(self) -> LrFindSpec | None:
        """The range test's settings in mode lr_find (the defaults when none are given);
        None when the job trains."""
        if self.mode != "lr_find":
            return None
        return self.lr_find or LrFindSpec()

    @property
    def display_name(self) -> str:
        return self.name or f"{self.dataset.label}-job"
