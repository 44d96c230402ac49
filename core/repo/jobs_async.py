"""The API's hot paths, on the event loop: read one job, insert one job. Each is a single
statement, sent by psycopg itself on a connection of the AUTOCOMMIT engine (api/deps.py
get_async_conn): one round trip with no BEGIN or ROLLBACK around it. SQLAlchemy's async
execution costs more than the query here (0.78 ms against psycopg's 0.30 ms per read of a
job, measured on one connection), so only its pool is used."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb

_COLUMNS = (
    "id, name, spec, state, attempt, preemptions, max_attempts, cancel_requested, progress, "
    "summary, model_summary, error, idempotency_key, created_at, started_at, finished_at"
)


async def fetch_job(conn: AsyncConnection, job_id: uuid.UUID) -> Any | None:
    """The job's row (attributes named as core/tables.Job's columns), or None."""
    cur = conn.cursor(row_factory=namedtuple_row)
    await cur.execute(f"SELECT {_COLUMNS} FROM job WHERE id = %s", (job_id,))
    return await cur.fetchone()


async def fetch_job_by_idempotency_key(conn: AsyncConnection, key: str) -> Any | None:
    cur = conn.cursor(row_factory=namedtuple_row)
    await cur.execute(f"SELECT {_COLUMNS} FROM job WHERE idempotency_key = %s", (key,))
    return await cur.fetchone()


async def insert_job(
    conn: AsyncConnection,
    *,
    name: str,
    spec: dict[str, Any],
    max_attempts: int,
    model_summary: dict[str, Any],
    total_steps: int,
    idempotency_key: str | None = None,
) -> Any | None:
    """The new job's row, as core/repo/jobs.create_job makes it; None when another job
    already holds `idempotency_key` (the caller reads that one back)."""
    cur = conn.cursor(row_factory=namedtuple_row)
    await cur.execute(
        "INSERT INTO job (id, name, spec, max_attempts, model_summary, progress, summary, "
        "idempotency_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT (idempotency_key) DO NOTHING RETURNING {_COLUMNS}",
        (uuid.uuid4(), name, Jsonb(spec), max_attempts, Jsonb(model_summary),
         Jsonb({"epoch": 0, "step": 0, "total_steps": total_steps}), Jsonb({}),
         idempotency_key),
    )
    return await cur.fetchone()
