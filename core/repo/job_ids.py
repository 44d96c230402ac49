"""Jobs by the start of their id, as `traindock ls` and the dashboard print it (8 characters).

A prefix of a UUID's text is a range of UUIDs, so the lookup is a range scan on the primary
key, however many jobs there are.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.tables import Job

_PREFIX = re.compile(r"[0-9a-f-]{1,36}")


def id_range(prefix: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The lowest and highest UUID whose text starts with `prefix` (any case), or None when
    no UUID's text does (a character that is not hex, a dash out of place)."""
    prefix = prefix.lower()
    if not _PREFIX.fullmatch(prefix):
        return None
    digits = prefix.replace("-", "")
    if len(digits) > 32:
        return None
    low, high = uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))
    if not str(low).startswith(prefix):
        return None
    return low, high


def jobs_with_id_prefix(session: Session, prefix: str, limit: int = 10,
                        owner: str | None = None) -> list[Job]:
    """Up to `limit` jobs whose id starts with `prefix`, in id order; [] for a string that
    cannot start an id. `owner`: only that owner's (None: every owner's)."""
    bounds = id_range(prefix)
    if bounds is None:
        return []
    query = select(Job).where(Job.id.between(*bounds)).order_by(Job.id).limit(limit)
    if owner is not None:
        query = query.where(Job.owner == owner)
    return list(session.scalars(query))
