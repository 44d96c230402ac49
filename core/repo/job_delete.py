"""Deleting a job's rows. Its metric points, rollups and checkpoint rows go with it (their
foreign keys cascade); its files are the caller's (core/checkpoint_files.py)."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.tables import FINAL_STATES, Job


def delete_ended_job(session: Session, job_id: uuid.UUID) -> str | None:
    """Delete the job if it has ended. Returns None when it was deleted (or did not exist),
    else the state that kept it: a queued or running job must be cancelled first, so that no
    worker writes rows or files for it after they are gone."""
    state = session.scalar(select(Job.state).where(Job.id == job_id).with_for_update())
    if state is None:
        return None
    if state not in FINAL_STATES:
        return state
    session.execute(delete(Job).where(Job.id == job_id))
    return None
