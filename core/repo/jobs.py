"""Job rows: create, read, list, and the lifecycle transitions (claim, lease, finish, cancel)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from core.tables import FINAL_STATES, Job

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _lease_end(ttl_s: float) -> ColumnElement:
    return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, ttl_s)


def create_job(
    session: Session,
    *,
    name: str,
    spec: dict[str, Any],
    max_attempts: int,
    model_summary: dict[str, Any],
    total_steps: int,
    idempotency_key: str | None = None,
) -> Job:
    job = Job(
        id=uuid.uuid4(),
        name=name,
        spec=spec,
        max_attempts=max_attempts,
        model_summary=model_summary,
        progress={"epoch": 0, "step": 0, "total_steps": total_steps},
        summary={},
        idempotency_key=idempotency_key,
    )
    session.add(job)
    session.flush()
    session.refresh(job)
    return job


def get_job(session: Session, job_id: uuid.UUID) -> Job | None:
    return session.get(Job, job_id)


def get_job_by_idempotency_key(session: Session, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.idempotency_key == key))


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        """URL-safe: microseconds since the epoch, then the id."""
        micros = (self.created_at - EPOCH) // timedelta(microseconds=1)
        return f"{micros}_{self.id.hex}"

    @classmethod
    def decode(cls, value: str) -> Cursor:
        micros, _, ident = value.partition("_")
        stamp = EPOCH + timedelta(microseconds=int(micros))
        return cls(stamp, uuid.UUID(hex=ident))


def list_jobs(
    session: Session, *, state: str | None, limit: int, after: Cursor | None
) -> tuple[list[Job], Cursor | None]:
    """Newest first; keyset pagination on (created_at, id)."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if state:
        query = query.where(Job.state == state)
    if after:
        query = query.where(
            or_(
                Job.created_at < after.created_at,
                and_(Job.created_at == after.created_at, Job.id < after.id),
            )
        )
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (Cursor(rows[-1].created_at, rows[-1].id) if more else None)


def request_cancel(session: Session, job_id: uuid.UUID) -> str | None:
    """Cancel a job: a queued one ends at once; a running one is flagged for its supervisor.

    Returns the job's state afterwards, or None when it had already ended.
    """
    ended = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == "queued")
        .values(state="cancelled", cancel_requested=True, finished_at=func.now(),
                updated_at=func.now())
        .returning(Job.state)
    ).scalar()
    if ended:
        return ended
    return session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == "running")
        .values(cancel_requested=True, updated_at=func.now())
        .returning(Job.state)
    ).scalar()


def claim_job(session: Session, job_id: uuid.UUID, owner: str, ttl_s: float) -> int | None:
    """Take a queued job atomically. None: someone else has it (a duplicate message)."""
    return session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == "queued")
        .values(
            state="running",
            attempt=Job.attempt + 1,
            lease_owner=owner,
            lease_expires_at=_lease_end(ttl_s),
            started_at=func.coalesce(Job.started_at, func.now()),
            updated_at=func.now(),
        )
        .returning(Job.attempt)
    ).scalar()


def renew_lease(session: Session, job_id: uuid.UUID, attempt: int, ttl_s: float) -> bool | None:
    """Extend the lease. Returns the cancel flag, or None when this attempt no longer owns
    the job (it was reaped or finished): the caller must stop training."""
    return session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempt == attempt, Job.state == "running")
        .values(
            lease_expires_at=_lease_end(ttl_s)
        )
        .returning(Job.cancel_requested)
    ).scalar()


def finish_job(
    session: Session, job_id: uuid.UUID, attempt: int, state: str, error: str | None = None
) -> bool:
    assert state in FINAL_STATES
    values: dict[str, Any] = {
        "state": state,
        "lease_owner": None,
        "lease_expires_at": None,
        "finished_at": func.now(),
        "updated_at": func.now(),
    }
    if error is not None:
        values["error"] = func.coalesce(Job.error, error)
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempt == attempt, Job.state == "running")
        .values(**values)
        .returning(Job.id)
    ).scalar()
    return done is not None


def record_error(session: Session, job_id: uuid.UUID, attempt: int, error: str) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempt == attempt, Job.state == "running")
        .values(error=error, updated_at=func.now())
    )


def record_progress(
    session: Session,
    job_id: uuid.UUID,
    attempt: int,
    progress: dict[str, Any],
    summary: dict[str, Any] | None = None,
) -> bool:
    values: dict[str, Any] = {"progress": progress, "updated_at": func.now()}
    if summary is not None:
        values["summary"] = summary
    return (
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempt == attempt, Job.state == "running")
            .values(**values)
            .returning(Job.id)
        ).scalar()
        is not None
    )
