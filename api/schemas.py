"""Response bodies. Request bodies are the JobSpec itself (core/jobspec.py)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from api.diagnosis import DiagnosisOut, diagnosis_of, finding_count, without_diagnosis
from core.tables import Job

EXAMPLE_SPEC: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent / "example_spec.json").read_text()
)


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class ValidationErrorOut(BaseModel):
    """A 422: one entry per problem; `message` starts with the field's path."""

    detail: list[FieldError]


# The answer of every route that reads a JSON body to one sent as something else (api/errors.py)
NOT_JSON = {415: {"model": ValidationErrorOut,
                  "description": "the body was not sent with Content-Type: application/json"}}


class LayerOut(BaseModel):
    """`params` counts parameters trained or frozen; `non_trainable_params` adds running
    statistics (batchnorm); `flops` is per example (models/flops.py says what counts)."""

    name: str
    type: str
    output_shape: list[int]
    params: int
    trainable_params: int
    non_trainable_params: int
    flops: int


class ModelOut(BaseModel):
    input_shape: list[int]
    output_shape: list[int]
    layers: list[LayerOut]
    total_params: int
    trainable_params: int
    non_trainable_params: int
    total_flops: int


class NamedWarningOut(BaseModel):
    """A warning with a stable name to match on (core/named_warning.py); its message is in
    `warnings` too."""

    name: str = Field(description="stable, e.g. unnormalized_inputs")
    field: str = Field(description="the spec field it is about, e.g. dataset.normalize")
    message: str
    suggestion: str = Field(description="the change that answers it, as `field: value`")


class ValidationOut(BaseModel):
    model: ModelOut
    dataset: dict[str, Any]
    warnings: list[str] = Field(description="every warning's message")
    named_warnings: list[NamedWarningOut] = Field(
        default_factory=list, description="the warnings that have a stable name")


class JobBrief(BaseModel):
    id: uuid.UUID
    name: str
    owner: str = Field(description="whose job it is: the owner of the API key that submitted "
                       "it (`local` with TRAINDOCK_AUTH=off)")
    state: str
    attempt: int
    progress: dict[str, Any]
    summary: dict[str, Any] = Field(description="latest and best metrics, test metrics, notes "
                                    "(docs/api.md); the diagnosis is served apart from it")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    sweep_id: uuid.UUID | None = Field(None, description="the sweep this job is a trial of")
    trial_number: int | None = Field(None, description="which of its sweep's trials")

    @classmethod
    def of(cls, job: Job) -> JobBrief:
        brief = cls.model_validate(job, from_attributes=True)
        brief.summary = without_diagnosis(brief.summary)
        return brief


class StartupOut(BaseModel):
    """The latest attempt's start-up, in seconds: from the start of its training process
    (a cold child) or from the hand-over of the job to a training process started ahead (a
    warm one) to the end of its first training step. Recorded once that step is done; the
    phases add up to `total_s`."""

    attempt: int = Field(description="the attempt these times are of")
    warm: bool = Field(description="whether a training process started ahead took the job")
    queue_s: float | None = Field(
        None, description="submit to claim, for a first attempt (null for a later one)")
    interpreter_s: float = Field(
        description="the interpreter's own start, up to the child's first import (0 warm)")
    imports_s: float = Field(
        description="importing torch and traindock; warm: what was left of its warm-up when "
        "the job arrived (0 when it was ready)")
    job_s: float = Field(0.0, description="connecting to the database, reading the job")
    data_s: float = Field(0.0, description="loading the dataset onto the device")
    model_s: float = Field(0.0, description="building the network")
    optimizer_s: float = Field(0.0, description="building the optimizer and its schedule")
    resume_s: float = Field(
        0.0, description="finding and loading a checkpoint, trimming metrics")
    preflight_s: float = Field(
        0.0, description="the preflight checks (spec preflight, or \"gradcheck\": true)")
    first_step_s: float = Field(description="the loop's set-up and its first step")
    total_s: float = Field(description="the start-up's whole time, the phases together")
    first_step_at: datetime | None = Field(None, description="when the first step ended")


class JobOut(JobBrief):
    max_attempts: int
    preemptions: int
    cancel_requested: bool
    spec: dict[str, Any]
    model: dict[str, Any]
    startup: StartupOut | None = Field(
        None, description="the latest attempt's start-up, once its first step is done")
    diagnosis: DiagnosisOut = Field(
        default_factory=DiagnosisOut, description="what is wrong with the training and what "
        "to change, updated while it trains, final once it has ended (docs/api.md, Diagnosis)")
    evaluation: dict[str, Any] | None = Field(
        None, description="the test split's evaluation once training has ended: for "
        "classification the confusion matrix (rows: true class, columns: predicted) and "
        "per-class precision, recall, F1 and support with class names; for multi-label "
        "per-label metrics; for regression residual statistics and a sample of (true, "
        "predicted) pairs (docs/api.md, Evaluation). Null before, and for jobs without a "
        "test split")

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(**JobBrief.of(job).model_dump(), max_attempts=job.max_attempts,
                   preemptions=job.preemptions,
                   cancel_requested=job.cancel_requested, spec=job.spec, model=job.model_summary,
                   startup=job.startup, diagnosis=diagnosis_of(job.summary),
                   evaluation=job.evaluation)


class JobListItem(JobBrief):
    """A job in a list. `spec_digest`: 8 hex digits of the SHA-256 of its spec without the
    name (the same training asked for, the same digest). `differs`: the spec fields, as dotted
    paths (`optimizer.lr`, `model.layers[1].out_features`), whose values differ between the
    jobs of this name on this page, with this job's values; {} when the name is alone on the
    page or the specs are the same. `findings`: how many findings the job's diagnosis holds
    (`GET /v1/jobs/{id}` has them)."""

    spec_digest: str
    differs: dict[str, Any]
    findings: int

    @classmethod
    def listed(cls, job: Job, spec_digest: str, differs: dict[str, Any]) -> JobListItem:
        return cls(**JobBrief.of(job).model_dump(), spec_digest=spec_digest, differs=differs,
                   findings=finding_count(job.summary))


class JobPage(BaseModel):
    items: list[JobListItem]
    next_cursor: str | None


class CheckpointOut(BaseModel):
    """`best`: this is the job's best checkpoint by the metric its spec monitors (early
    stopping's or reduce_on_plateau's `monitor`, else val_loss), kept by retention; at most
    one row is best, none when no checkpoint recorded that metric. `filename`: the name the
    download is saved under, `<job name>-<first 8 of the job id>-step-<n>.pt`."""

    id: int
    step: int
    epoch: int
    sha256: str
    size: int
    metrics: dict[str, Any]
    created_at: datetime
    best: bool
    filename: str


class SeriesOut(BaseModel):
    """Parallel lists in step order. A downsampled series has one entry per step range: the
    range's last point (`step`, `value`, `epoch`) and its `min`, `max` and `mean`."""

    step: list[int]
    value: list[float]
    epoch: list[int]
    min: list[float] | None = None
    max: list[float] | None = None
    mean: list[float] | None = None
    downsampled: bool | None = None


class MetricsOut(BaseModel):
    series: dict[str, SeriesOut]


class MetricNamesOut(BaseModel):
    """Every name the job has at least one point of, sorted. A queued job has none; a running
    one may log more later (`val_*` after its first evaluation, `test_*` at its end)."""

    names: list[str]


class StateEvent(BaseModel):
    """The data of an `event: state` on /v1/jobs/{id}/events."""

    state: str
    attempt: int
    error: str | None
    finished_at: datetime | None


class PointsEvent(BaseModel):
    """The data of an `event: metrics`: the new points, every series in step order."""

    series: dict[str, SeriesOut]


class WorkerOut(BaseModel):
    name: str
    host: str
    pid: int
    devices: list[str]
    current_job_id: uuid.UUID | None
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None
    alive: bool


class DeliveryOut(BaseModel):
    """One webhook event of the job and how its delivery went: `delivered_at` once the
    receiver answered with a 2xx; `next_attempt_at` is when it is tried again; `given_up_at`
    once retries ran out (TRAINDOCK_WEBHOOK_GIVE_UP_S) or the destination was refused.
    `last_status` is the receiver's last HTTP status (none: no answer)."""

    id: int
    event: str
    url: str
    payload: dict[str, Any]
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    given_up_at: datetime | None


class WebhookSecretOut(BaseModel):
    """The key deliveries are signed with (Standard Webhooks' `whsec_...` format)."""

    secret: str
