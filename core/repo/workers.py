"""Worker rows: each worker reports itself every few seconds; the API lists them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core.tables import Worker


def report_worker(
    session: Session, *, name: str, host: str, pid: int, devices: list[Any],
    current_job_id: uuid.UUID | None,
) -> None:
    stmt = insert(Worker).values(
        name=name, host=host, pid=pid, devices=devices, current_job_id=current_job_id,
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"host": host, "pid": pid, "devices": devices,
                  "current_job_id": current_job_id, "last_seen_at": func.now(),
                  "stopped_at": None},
        )
    )


def mark_worker_stopped(session: Session, name: str) -> None:
    session.execute(
        update(Worker).where(Worker.name == name)
        .values(stopped_at=func.now(), current_job_id=None)
    )


def list_workers(session: Session, limit: int = 500) -> list[Worker]:
    return list(session.scalars(
        select(Worker).order_by(Worker.last_seen_at.desc()).limit(limit)
    ))
