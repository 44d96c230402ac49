"""What an owner holds on the server's disk: its datasets' arrays and its jobs' checkpoints,
in bytes, for TRAINDOCK_MAX_STORED_BYTES_PER_OWNER. A dataset whose content another row
shares counts for each owner that holds it: deleting one's own rows is what frees one's
quota. One SQL statement, for a Session (uploads) and for the event loop's connection
(submissions)."""

from __future__ import annotations

from psycopg import AsyncConnection
from sqlalchemy import text
from sqlalchemy.orm import Session

# {p}: the owner's placeholder, in SQLAlchemy's style or psycopg's.
_STORED = (
    "SELECT (SELECT coalesce(sum(bytes), 0) FROM dataset WHERE owner = {p})"
    " + (SELECT coalesce(sum(c.size), 0) FROM checkpoint c JOIN job j ON j.id = c.job_id"
    " WHERE j.owner = {p})"
)


def stored_bytes(session: Session, owner: str) -> int:
    return int(session.execute(text(_STORED.format(p=":owner")),
                               {"owner": owner}).scalar_one())


async def stored_bytes_async(conn: AsyncConnection, owner: str) -> int:
    cur = conn.cursor()
    await cur.execute(_STORED.format(p="%(owner)s"), {"owner": owner})
    return int((await cur.fetchone())[0])
