"""Job rows: create, read, list, and the lifecycle transitions (claim, lease, finish, cancel)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, tuple_, update
from sqlalchemy.orm import Session, defer

from core.api_keys import LOCAL_OWNER
from core.progress import Progress
from core.repo.job_ids import id_range
from core.tables import FINAL_STATES, Job

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _update_running(
    session: Session, job_id: uuid.UUID, attempt: int, values: dict[str, Any]
) -> bool:
    """Write to a job only while `attempt` runs it: the fencing every running write goes
    through. False when another attempt (or none) owns the job."""
    return (
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempt == attempt, Job.state == "running")
            .values(**values)
            .returning(Job.id)
        ).scalar()
        is not None
    )


def _lease_end(ttl_s: float) -> ColumnElement:
    return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, ttl_s)


def new_job_values(
    *,
    name: str,
    spec: dict[str, Any],
    max_attempts: int,
    model_summary: dict[str, Any],
    total_steps: int,
    idempotency_key: str | None = None,
    owner: str = LOCAL_OWNER,
) -> dict[str, Any]:
    """The columns a new job's row is given; the rest are the table's defaults. Shared by
    create_job and core/repo/jobs_async.insert_job."""
    return {
        "id": uuid.uuid4(),
        "name": name,
        "owner": owner,
        "spec": spec,
        "max_attempts": max_attempts,
        "model_summary": model_summary,
        "progress": Progress(total_steps=total_steps).as_dict(),
        "summary": {},
        "idempotency_key": idempotency_key,
    }


def create_job(session: Session, **fields: Any) -> Job:
    """A new job's row from new_job_values(**fields), flushed."""
    job = Job(**new_job_values(**fields))
    session.add(job)
    session.flush()
    session.refresh(job)
    return job


def get_job(session: Session, job_id: uuid.UUID) -> Job | None:
    return session.get(Job, job_id)


def get_job_by_idempotency_key(session: Session, key: str, owner: str = LOCAL_OWNER
                               ) -> Job | None:
    return session.scalar(select(Job).where(Job.owner == owner, Job.idempotency_key == key))


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
    session: Session, *, state: str | None, limit: int, after: Cursor | None,
    id_prefix: str | None = None, owner: str | None = None,
) -> tuple[list[Job], Cursor | None]:
    """Newest first; keyset pagination on (created_at, id). `id_prefix`: only ids that start
    with it (a range of the primary key; an impossible prefix matches nothing). `owner`: only
    that owner's jobs (None: every owner's). A list never shows a job's evaluation (tens
    of kB each): it is left in the table, raising if touched."""
    query = (select(Job).options(defer(Job.evaluation, raiseload=True))
             .order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1))
    if owner is not None:
        query = query.where(Job.owner == owner)
    if state:
        query = query.where(Job.state == state)
    if id_prefix is not None:
        bounds = id_range(id_prefix)
        if bounds is None:
            return [], None
        query = query.where(Job.id.between(*bounds))
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
            # The note on why the last attempt ended served while the job waited; from here
            # on `error` belongs to this attempt.
            error=None,
            updated_at=func.now(),
        )
        .returning(Job.attempt)
    ).scalar()


def cancel_flag(session: Session, job_id: uuid.UUID, attempt: int) -> bool | None:
    """The cancel flag, or None when `attempt` no longer runs the job. Reads three columns,
    not the row: supervisors ask several times a second."""
    row = session.execute(
        select(Job.attempt, Job.state, Job.cancel_requested).where(Job.id == job_id)
    ).one_or_none()
    if row is None or row.attempt != attempt or row.state != "running":
        return None
    return row.cancel_requested


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


def attempts_left(job: Job) -> bool:
    """Graceful stops (preemptions) do not count against max_attempts."""
    return job.attempt - job.preemptions < job.max_attempts


def requeue_job(
    session: Session, job_id: uuid.UUID, attempt: int, *, preempted: bool, note: str | None
) -> bool:
    """Put a running attempt's job back in the queue (the caller publishes it)."""
    values: dict[str, Any] = {
        "state": "queued",
        "lease_owner": None,
        "lease_expires_at": None,
        "published_at": None,
        "updated_at": func.now(),
    }
    if preempted:
        values["preemptions"] = Job.preemptions + 1
    if note:
        values["error"] = note
    return _update_running(session, job_id, attempt, values)


def mark_published(session: Session, job_ids: list[uuid.UUID]) -> None:
    """Stamp jobs whose message was just published, or was just seen waiting in the broker:
    either way the job has a live message as of now, and leaves the reaper's window."""
    if job_ids:
        session.execute(
            update(Job).where(Job.id.in_(job_ids)).values(published_at=func.now())
        )


def expire_leases(session: Session) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Running jobs whose lease has expired go back to the queue, or fail with "worker lost"
    once their attempts are spent. Returns (requeued, failed)."""
    lost = list(
        session.scalars(
            select(Job)
            .where(Job.state == "running", Job.lease_expires_at < func.now())
            .with_for_update(skip_locked=True)
        )
    )
    requeued, failed = [], []
    for job in lost:
        owner = job.lease_owner
        job.lease_owner = None
        job.lease_expires_at = None
        job.updated_at = func.now()
        if attempts_left(job):
            job.state = "queued"
            job.published_at = None
            job.error = f"attempt {job.attempt}: worker {owner} lost (its lease expired)"
            requeued.append(job.id)
        else:
            job.state = "failed"
            job.finished_at = func.now()
            job.error = (
                f"worker lost: the lease of attempt {job.attempt} (worker {owner}) expired, "
                f"and all {job.max_attempts} attempts are spent"
            )
            failed.append(job.id)
    session.flush()
    return requeued, failed


def unpublished_queued_jobs(session: Session, older_than_s: float, limit: int = 1000,
                            after: Cursor | None = None) -> list[tuple[uuid.UUID, Cursor]]:
    """Queued jobs last published (or seen in the broker, or created) more than
    `older_than_s` seconds ago, oldest first, a page of `limit` after `after`; each with its
    keyset cursor, so that a caller can walk every one of them whatever the backlog."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_s)
    query = (
        select(Job.id, Job.created_at)
        .where(Job.state == "queued", func.coalesce(Job.published_at, Job.created_at) < cutoff)
        .order_by(Job.created_at, Job.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(Job.created_at, Job.id) > tuple_(after.created_at, after.id))
    return [(job_id, Cursor(created_at, job_id)) for job_id, created_at in session.execute(query)]


def finish_job(
    session: Session, job_id: uuid.UUID, attempt: int, state: str, error: str | None = None
) -> bool:
    """End a running attempt; a success leaves `error` empty."""
    assert state in FINAL_STATES
    values: dict[str, Any] = {
        "state": state,
        "lease_owner": None,
        "lease_expires_at": None,
        "finished_at": func.now(),
        "updated_at": func.now(),
    }
    if state == "succeeded":
        values["error"] = None
    elif error is not None:
        values["error"] = error
    return _update_running(session, job_id, attempt, values)


def record_error(session: Session, job_id: uuid.UUID, attempt: int, error: str) -> None:
    _update_running(session, job_id, attempt, {"error": error, "updated_at": func.now()})


def record_progress(
    session: Session,
    job_id: uuid.UUID,
    attempt: int,
    progress: Progress,
    summary: dict[str, Any] | None = None,
) -> bool:
    values: dict[str, Any] = {"progress": progress.as_dict(), "updated_at": func.now()}
    if summary is not None:
        values["summary"] = summary
    return _update_running(session, job_id, attempt, values)


def record_evaluation(session: Session, job_id: uuid.UUID, attempt: int,
                      evaluation: dict[str, Any]) -> bool:
    """The test split's evaluation at the run's end (worker/evaluation_report.py)."""
    return _update_running(session, job_id, attempt, {"evaluation": evaluation})


def record_startup(session: Session, job_id: uuid.UUID, attempt: int,
                   startup: dict[str, Any]) -> bool:
    """The attempt's start-up breakdown (worker/startup.py); it replaces an earlier attempt's."""
    return _update_running(session, job_id, attempt, {"startup": startup})
