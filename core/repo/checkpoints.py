"""Checkpoint rows. The files live under DATA_DIR/checkpoints/<job_id>/."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from core.tables import Checkpoint, Job


def add_checkpoint(
    session: Session, *, job_id: uuid.UUID, attempt: int, step: int, epoch: int, path: str,
    sha256: str, size: int, metrics: dict[str, Any],
) -> int | None:
    """Record a checkpoint if `attempt` still owns the job. Returns its id, or None."""
    # Lock the job row so ownership cannot change between the check and the insert.
    owner = session.scalar(
        select(Job.id)
        .where(Job.id == job_id, Job.attempt == attempt, Job.state == "running")
        .with_for_update()
    )
    if owner is None:
        return None
    stmt = pg_insert(Checkpoint).values(
        job_id=job_id, attempt=attempt, step=step, epoch=epoch, path=path, sha256=sha256,
        size=size, metrics=metrics,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["job_id", "step"],
        set_={"attempt": attempt, "epoch": epoch, "path": path, "sha256": sha256, "size": size,
              "metrics": metrics},
    ).returning(Checkpoint.id)
    return session.execute(stmt).scalar()


def list_checkpoints(session: Session, job_id: uuid.UUID) -> list[Checkpoint]:
    return list(
        session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)
                        .order_by(Checkpoint.step))
    )


def get_checkpoint(session: Session, job_id: uuid.UUID, checkpoint_id: int) -> Checkpoint | None:
    return session.scalar(
        select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.id == checkpoint_id)
    )


def delete_checkpoints(session: Session, job_id: uuid.UUID, ids: list[int]) -> None:
    if ids:
        session.execute(
            delete(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.id.in_(ids))
        )


def latest_checkpoint(session: Session, job_id: uuid.UUID) -> Checkpoint | None:
    return session.scalar(
        select(Checkpoint).where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.step.desc()).limit(1)
    )
