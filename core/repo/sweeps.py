"""Sweep rows: a page of an owner's sweeps, how many trials of each have ended, and the sweep
an Idempotency-Key created."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, distinct, func, or_, select
from sqlalchemy.orm import Session

from core.repo.jobs import Cursor
from core.tables import Job, Sweep


def list_sweeps(session: Session, *, limit: int, after: Cursor | None, owner: str | None
                ) -> tuple[list[Sweep], Cursor | None]:
    """Newest first; keyset pagination on (created_at, id), as jobs are listed. `owner`: only
    that owner's (None: every owner's)."""
    query = select(Sweep).order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit + 1)
    if owner is not None:
        query = query.where(Sweep.owner == owner)
    if after:
        query = query.where(or_(Sweep.created_at < after.created_at,
                                and_(Sweep.created_at == after.created_at, Sweep.id < after.id)))
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (Cursor(rows[-1].created_at, rows[-1].id) if more else None)


def trials_ended(session: Session, sweep_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """For each sweep, how many trials have every repeat ended: one grouped query for a page
    of sweeps (ix_job_sweep_id), so a list costs no query per sweep."""
    if not sweep_ids:
        return {}
    active = Job.state.in_(("queued", "running"))
    rows = session.execute(
        select(Job.sweep_id, func.count(distinct(Job.trial_number))
               - func.count(distinct(Job.trial_number)).filter(active))
        .where(Job.sweep_id.in_(sweep_ids)).group_by(Job.sweep_id))
    found = {sweep_id: count for sweep_id, count in rows}
    return {sweep_id: found.get(sweep_id, 0) for sweep_id in sweep_ids}


def sweep_by_idempotency_key(session: Session, owner: str, key: str) -> Sweep | None:
    return session.scalar(select(Sweep).where(Sweep.owner == owner,
                                              Sweep.idempotency_key == key))
