"""The schema. PostgreSQL is the record of every job; migrations/ mirrors this file."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# pruned: a sweep's pruner stopped the trial early (core/sweeps/prune.py); final, as the others.
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "pruned")
FINAL_STATES = ("succeeded", "failed", "cancelled", "pruned")
# A sweep's state reads as a job's (queued until its first trial), but a sweep is never pruned.
SWEEP_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (
        CheckConstraint(
            "state IN ('queued','running','succeeded','failed','cancelled','pruned')",
            name="state",
        ),
        # Newest-first listing with keyset pagination, optionally per state.
        Index("ix_job_created_at_id", "created_at", "id"),
        Index("ix_job_state_created_at_id", "state", "created_at", "id"),
        # An owner's newest-first listing.
        Index("ix_job_owner_created_at_id", "owner", "created_at", "id"),
        UniqueConstraint("owner", "idempotency_key", name="uq_job_owner_idempotency_key"),
        # A trial's job exists once: the driver can never insert the same seed twice.
        UniqueConstraint("sweep_id", "trial_number", "trial_repeat",
                         name="uq_job_sweep_id_trial"),
        # The reaper's scan: running jobs by lease expiry.
        Index(
            "ix_job_running_lease", "lease_expires_at", postgresql_where=text("state = 'running'")
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(String(16), server_default="queued")
    # `attempt` is the fencing token: it only grows. Graceful stops (a worker shutting down)
    # are counted in `preemptions` and do not spend one of `max_attempts`.
    attempt: Mapped[int] = mapped_column(Integer, server_default="0")
    preemptions: Mapped[int] = mapped_column(Integer, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, server_default="3")
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    progress: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    model_summary: Mapped[dict[str, Any]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb")
    )
    error: Mapped[str | None] = mapped_column(Text)
    # The latest attempt's start-up, phase by phase, written once after its first training
    # step (worker/startup.py): read whole, never queried into, and its phases may grow.
    startup: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The test split's evaluation at the end of training (worker/evaluation_report.py): read
    # whole, bounded in size, null until a run ends with a test split.
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # Whose job it is (core/api_keys.py); an Idempotency-Key is one owner's, not global.
    owner: Mapped[str] = mapped_column(String(100), server_default="local")
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A sweep's trial (core/sweeps/driver.py): which sweep, which configuration (numbered from
    # 0 in the order they were asked for), which seed of it, and the values it was given.
    sweep_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("sweep.id", ondelete="CASCADE"), index=True
    )
    trial_number: Mapped[int | None] = mapped_column(Integer)
    trial_repeat: Mapped[int | None] = mapped_column(Integer)
    trial_params: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class Sweep(Base):
    """Many jobs from one base spec (core/sweeps/). Its trials are job rows with `sweep_id`;
    the search's state is rebuilt from them, so that this row and theirs are all there is."""

    __tablename__ = "sweep"
    __table_args__ = (
        CheckConstraint(
            "state IN ('queued','running','succeeded','failed','cancelled')", name="state"
        ),
        Index("ix_sweep_owner_created_at_id", "owner", "created_at", "id"),
        Index("ix_sweep_active", "state", postgresql_where=text("state IN ('queued','running')")),
        UniqueConstraint("owner", "idempotency_key", name="uq_sweep_owner_idempotency_key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    owner: Mapped[str] = mapped_column(String(100), server_default="local")
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    trials: Mapped[int] = mapped_column(Integer)  # configurations the budget allows
    # Configurations asked so far: the next trial's number. Kept here rather than counted
    # from the jobs, so that deleting a trial's job never has its number asked again.
    asked: Mapped[int] = mapped_column(Integer, server_default="0")
    state: Mapped[str] = mapped_column(String(16), server_default="queued")
    # {"trial_number", "params", "value"} of the best configuration so far
    best: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # A retried POST /v1/sweeps with this key returns this sweep; one owner's, as a job's is.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Worker(Base):
    """A worker process, as it last reported itself."""

    __tablename__ = "worker"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    devices: Mapped[list[Any]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    current_job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MetricKey(Base):
    __tablename__ = "metric_key"

    id: Mapped[int] = mapped_column(SmallInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class Metric(Base):
    __tablename__ = "metric"

    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("job.id", ondelete="CASCADE"), primary_key=True
    )
    key_id: Mapped[int] = mapped_column(
        SmallInteger, ForeignKey("metric_key.id"), primary_key=True
    )
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Double)
    epoch: Mapped[int] = mapped_column(Integer)
    wall_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))



class MetricRollup(Base):
    """Per series, the count, min, max, sum and last point of each aligned block of
    2**level steps (block = step >> level), kept up to date as points are written
    (core/repo/rollups.py), so that a downsampled read of a long series reads a few thousand
    of these rows instead of every point."""

    __tablename__ = "metric_rollup"

    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("job.id", ondelete="CASCADE"), primary_key=True
    )
    key_id: Mapped[int] = mapped_column(
        SmallInteger, ForeignKey("metric_key.id"), primary_key=True
    )
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    block: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
    vmin: Mapped[float] = mapped_column(Double)
    vmax: Mapped[float] = mapped_column(Double)
    vsum: Mapped[float] = mapped_column(Double)
    last_step: Mapped[int] = mapped_column(BigInteger)
    last_value: Mapped[float] = mapped_column(Double)
    last_epoch: Mapped[int] = mapped_column(Integer)

class Checkpoint(Base):
    __tablename__ = "checkpoint"
    __table_args__ = (Index("ix_checkpoint_job_id_step", "job_id", "step", unique=True),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("job.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(BigInteger)
    epoch: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Dataset(Base):
    """An uploaded dataset: its description, and the sha256 naming its folder under
    `DATA_DIR/datasets/` (core/dataset_store.py). Several rows may share one folder."""

    __tablename__ = "dataset"
    # Names are each owner's own: two owners may both have a "digits-v2".
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_dataset_owner_name"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    owner: Mapped[str] = mapped_column(String(100), server_default="local")
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    format: Mapped[str] = mapped_column(String(32))
    task: Mapped[str] = mapped_column(String(32))
    input_shape: Mapped[list[int]] = mapped_column(JSONB)
    target_shape: Mapped[list[int]] = mapped_column(JSONB)
    num_classes: Mapped[int | None] = mapped_column(Integer)
    class_names: Mapped[list[str] | None] = mapped_column(JSONB)
    feature_names: Mapped[list[str] | None] = mapped_column(JSONB)
    class_counts: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # {"train": n, "val": n | None, "test": n | None}
    splits: Mapped[dict[str, Any]] = mapped_column(JSONB)
    feature_stats: Mapped[dict[str, Any]] = mapped_column(JSONB)
    bytes: Mapped[int] = mapped_column(BigInteger)
    # {"filename": ...} for an upload, {"url": ...} for an import
    source: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    """A key the API accepts as `Authorization: Bearer <token>`: only the token's sha256 is
    kept (core/api_keys.py). Revoked keys stay, so that `keys list` tells what happened."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    owner: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[list[str]] = mapped_column(JSONB)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Not accepted from then on, as if revoked; None: until revoked.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """One event of a job whose spec has `notify`, to be POSTed to its URL: written by a
    trigger on the job's state (migrations/versions/*_0006_webhooks.py), delivered and retried
    by the workers (worker/webhooks.py)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_job_id", "job_id", "id"),
        Index("ix_webhook_delivery_due", "next_attempt_at",
              postgresql_where=text("delivered_at IS NULL AND given_up_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("job.id", ondelete="CASCADE")
    )
    event: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                      server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    given_up_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookSecret(Base):
    """The key webhook deliveries are signed with, one per owner (created on first read)."""

    __tablename__ = "webhook_secret"

    owner: Mapped[str] = mapped_column(String(200), primary_key=True)
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
