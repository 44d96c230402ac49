"""The API's hot paths, on the event loop: read one job, insert one job. Each is a single
statement, sent by psycopg itself on a connection of the AUTOCOMMIT engine (api/deps.py
get_async_conn): one round trip with no BEGIN or ROLLBACK around it. SQLAlchemy's async
execution costs more than the query here (docs/benchmarks.md, "Figures behind design
choices"), so only its pool is used."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb

from core.repo.jobs import new_job_values
from core.tables import Job

# Every column of the table, so that a column added to core/tables.Job is read here too.
_COLUMNS = ", ".join(column.name for column in Job.__table__.columns)


async def fetch_job(conn: AsyncConnection, job_id: uuid.UUID) -> Any | None:
    """The job's row (attributes named as core/tables.Job's columns), or None."""
    cur = conn.cursor(row_factory=namedtuple_row)
    await cur.execute(f"SELECT {_COLUMNS} FROM job WHERE id = %s", (job_id,))
    return await cur.fetchone()


async def fetch_job_by_idempotency_key(conn: AsyncConnection, owner: str, key: str
                                       ) -> Any | None:
    """`owner`'s job of that key: each owner's keys are their own."""
    cur = conn.cursor(row_factory=namedtuple_row)
    await cur.execute(f"SELECT {_COLUMNS} FROM job WHERE owner = %s AND idempotency_key = %s",
                      (owner, key))
    return await cur.fetchone()


async def count_active(conn: AsyncConnection, owner: str) -> int:
    """The owner's queued and running jobs."""
    cur = conn.cursor()
    await cur.execute("SELECT count(*) FROM job WHERE owner = %s AND state IN "
                      "('queued', 'running')", (owner,))
    return (await cur.fetchone())[0]


async def insert_job(conn: AsyncConnection, **job: Any) -> Any | None:
    """The new job's row, made from core/repo/jobs.new_job_values(**job) as create_job makes
    it; None when another job already holds the idempotency key (the caller reads that one
    back)."""
    values = new_job_values(**job)
    columns = ", ".join(values)
    cur = conn.cursor(row_factory=namedtuple_row)
    await cur.execute(
        f"INSERT INTO job ({columns}) VALUES ({', '.join(['%s'] * len(values))}) "
        f"ON CONFLICT (owner, idempotency_key) DO NOTHING RETURNING {_COLUMNS}",
        [Jsonb(v) if isinstance(v, dict) else v for v in values.values()],
    )
    return await cur.fetchone()
