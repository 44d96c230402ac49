"""The API's answers as frozen dataclasses, built by keyword from its JSON. Keys this client
does not know are ignored (a newer server must not break an older client) and kept in `raw`;
keys it knows but the server left out take their defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "pruned"})

T = TypeVar("T")


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def build(cls: type[T], data: dict[str, Any], **converted: Any) -> T:
    """`cls` from the JSON object `data`: its known keys, `converted` values over them."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    known = {k: v for k, v in data.items() if k in names}
    known.update(converted)
    for name in ("created_at", "started_at", "finished_at", "next_attempt_at", "delivered_at",
                 "given_up_at", "last_used_at", "expires_at", "revoked_at"):
        if name in known:
            known[name] = _time(known[name])
    if "raw" in names:
        known["raw"] = data
    return cls(**known)


@dataclass(frozen=True)
class Progress:
    """`epochs` is set once a worker has the job; `total_steps` is an estimate before."""

    step: int = 0
    epoch: int = 0
    total_steps: int | None = None
    epochs: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Progress:
        return build(cls, data or {})


@dataclass(frozen=True)
class Job:
    """A job as `GET /v1/jobs/{id}` (every field) or `GET /v1/jobs` (no `spec`, `model`,
    `max_attempts`, `cancel_requested`, `diagnosis`, `evaluation`; with `spec_digest`, `differs` and
    `findings`) answers it."""

    id: str
    name: str
    state: str
    attempt: int = 0
    progress: Progress = field(default_factory=Progress)
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    spec: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    max_attempts: int | None = None
    preemptions: int | None = None
    cancel_requested: bool | None = None
    startup: dict[str, Any] | None = None
    spec_digest: str | None = None
    differs: dict[str, Any] | None = None
    owner: str | None = None  # with API keys: the owner of the key that submitted it
    # `GET /v1/jobs/{id}`: {final, step, findings: [{name, severity, since_step, evidence,
    # data, actions: [{field, value, why}]}]}; a list has only `findings`, their count
    diagnosis: dict[str, Any] | None = None
    findings: int | None = None
    sweep_id: str | None = None  # a sweep's trial: which sweep, which of its trials
    trial_number: int | None = None
    # `GET /v1/jobs/{id}` once training has ended: the test split's evaluation, by `task`:
    # classification {class_names, matrix (rows true, columns predicted), per_class: [{name,
    # precision, recall, f1, support}], macro, top_confusions}; multilabel {label_names,
    # per_label}; regression {outputs: [{name, residual, true, predicted}]} (docs/api.md)
    evaluation: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return build(cls, data, progress=Progress.from_json(data.get("progress")))

    @property
    def final(self) -> bool:
        """Whether the job has ended: succeeded, failed, cancelled or pruned (a sweep's
        pruner stopped it)."""
        return self.state in FINAL_STATES

    @property
    def best(self) -> dict[str, Any]:
        """`summary.best`: per metric, `{value, step, epoch}` of its best value."""
        return self.summary.get("best", {})

    @property
    def test(self) -> dict[str, Any]:
        """`summary.test`: the test metrics, once the job has them."""
        return self.summary.get("test", {})


@dataclass(frozen=True)
class Validation:
    """`POST /v1/jobs/validate`: the model's layers and shapes, the dataset, warnings."""

    model: dict[str, Any]
    dataset: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # those with a stable name: {name, field, message, suggestion}
    named_warnings: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Validation:
        return build(cls, data)


@dataclass(frozen=True)
class Checkpoint:
    """`best`: the job's best by the metric its spec monitors. `filename`: the name the
    download is saved under, `<job name>-<id8>-step-<n>.pt`."""

    id: int
    step: int
    epoch: int
    sha256: str
    size: int
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    best: bool = False
    filename: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        return build(cls, data)


@dataclass(frozen=True)
class Predictions:
    """POST /v1/jobs/{id}/predict's answer: one entry per row sent. Classification:
    {"class", "index", "probabilities"}; multi-label: {"labels", "probabilities"};
    regression: {"values"}. `checkpoint`: the one that answered ({id, step, sha256, ...})."""

    task: str
    predictions: list[dict[str, Any]]
    checkpoint: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def classes(self) -> list[str | None]:
        """Each row's predicted class name (None for regression and multi-label rows)."""
        return [p.get("class") for p in self.predictions]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Predictions:
        return build(cls, data)


@dataclass(frozen=True)
class MetricPoint:
    step: int
    value: float
    epoch: int


@dataclass(frozen=True)
class Series:
    """One metric's points as parallel lists in step order. A downsampled series has one
    entry per step range (its last point) and that range's `min`, `max` and `mean`."""

    name: str
    step: list[int]
    value: list[float]
    epoch: list[int]
    min: list[float] | None = None
    max: list[float] | None = None
    mean: list[float] | None = None
    downsampled: bool = False

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> Series:
        return build(cls, data, name=name, downsampled=bool(data.get("downsampled")))

    @property
    def points(self) -> list[MetricPoint]:
        return [MetricPoint(s, v, e)
                for s, v, e in zip(self.step, self.value, self.epoch, strict=True)]

    @property
    def last(self) -> MetricPoint | None:
        return MetricPoint(self.step[-1], self.value[-1], self.epoch[-1]) if self.step else None

    def __len__(self) -> int:
        return len(self.step)


@dataclass(frozen=True)
class Delivery:
    """One webhook event of a job and how its delivery went."""

    id: int
    event: str
    url: str
    payload: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    given_up_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Delivery:
        return build(cls, data)


@dataclass(frozen=True)
class ApiKey:
    """An API key as /v1/keys lists it; `token` only in the answer that made it."""

    id: int
    name: str
    owner: str
    scopes: list[str] = field(default_factory=list)
    state: str = "active"  # active, expired or revoked
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    token: str | None = field(default=None, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApiKey:
        return build(cls, data)


@dataclass(frozen=True)
class Usage:
    """What the key's owner holds against the server's per-owner limits (None: no limit)."""

    owner: str
    stored_bytes: int
    max_stored_bytes: int | None
    active_jobs: int
    max_active_jobs: int | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Usage:
        return build(cls, data)


@dataclass(frozen=True)
class LogStream:
    """An attempt's log as it arrives (`Client.open_log`): iterate it for the bytes in chunks.
    `attempt` is the attempt it is; `skipped` the bytes at its start the API left out (it sends
    at most the last MiB unless asked for more), 0 when it begins at the start."""

    attempt: int
    skipped: int
    chunks: Iterator[bytes] = field(repr=False, compare=False)

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks


@dataclass(frozen=True)
class Sweep:
    """A sweep as `GET /v1/sweeps/{id}` (every field) or `GET /v1/sweeps` (no `spec`,
    `trials`, `best_spec`, `importances`) answers it. Each trial is a dict: number, params,
    state, value (the mean over its repeats; null for a pruned trial), std, values, pruned
    (where and why the pruner stopped it), jobs."""

    id: str
    name: str
    state: str
    method: str = ""
    objective: dict[str, Any] = field(default_factory=dict)
    trials_planned: int = 0
    trials_ended: int = 0
    repeats: int = 1
    parallelism: int = 1
    best: dict[str, Any] | None = None
    error: str | None = None
    owner: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    spec: dict[str, Any] | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)
    best_spec: dict[str, Any] | None = None
    importances: dict[str, float] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sweep:
        return build(cls, data)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES
