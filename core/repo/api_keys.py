"""api_key rows: create, list, revoke (the `traindock keys` verbs and `up`, on a session), and
the API's lookup of a presented token (on the event loop, with psycopg itself, as
core/repo/jobs_async.py does)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import namedtuple_row
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.api_keys import check_name, new_token, token_hash
from core.tables import ApiKey

# last_used_at is written at most this often per key: a write on every request would queue
# concurrent requests of one key behind one row lock.
TOUCH_EVERY_S = 60
# The longest a key may be made to last (ten years): beyond it, make one that never expires.
MAX_EXPIRY_DAYS = 3650


class ApiKeyProblem(ValueError):
    """A key that cannot be made or found; the message says what to change."""


def create_key(session: Session, name: str, scopes: list[str], owner: str | None = None,
               expires_in_days: float | None = None) -> tuple[ApiKey, str]:
    """The new row and its token (the only time the token exists outside the caller).
    `expires_in_days`: refused from then on; None: until revoked."""
    check_name("--name", name)
    owner = check_name("--owner", owner or name)
    expires_at = None
    if expires_in_days is not None:
        if not 0 < expires_in_days <= MAX_EXPIRY_DAYS:
            raise ApiKeyProblem(f"expires in {expires_in_days:g} days: give a number of days "
                                f"above 0 and at most {MAX_EXPIRY_DAYS}")
        expires_at = datetime.now(UTC) + timedelta(days=expires_in_days)
    token = new_token()
    key = ApiKey(name=name, owner=owner, scopes=scopes, token_hash=token_hash(token),
                 expires_at=expires_at)
    try:
        with session.begin_nested():  # a taken name undoes this insert only
            session.add(key)
    except IntegrityError:
        raise ApiKeyProblem(f"a key named {name!r} exists already; choose another --name "
                        "(`traindock keys list` shows them)") from None
    session.refresh(key)
    return key, token


def list_keys(session: Session, owner: str | None = None) -> list[ApiKey]:
    """Every key, or `owner`'s."""
    query = select(ApiKey).order_by(ApiKey.id)
    if owner is not None:
        query = query.where(ApiKey.owner == owner)
    return list(session.scalars(query))


def find_key(session: Session, name_or_id: str) -> ApiKey | None:
    key = session.scalar(select(ApiKey).where(ApiKey.name == name_or_id))
    if key is None and name_or_id.isdigit():
        key = session.get(ApiKey, int(name_or_id))
    return key


def revoke_key(session: Session, name_or_id: str) -> ApiKey:
    key = find_key(session, name_or_id)
    if key is None:
        raise ApiKeyProblem(f"no key named {name_or_id!r} and none with that id; "
                        "`traindock keys list` shows them")
    return revoke(session, key)


def revoke(session: Session, key: ApiKey) -> ApiKey:
    """Revoke `key` now (a revoked key stays as it was)."""
    if key.revoked_at is None:
        session.execute(update(ApiKey).where(ApiKey.id == key.id)
                        .values(revoked_at=func.now()))
        session.refresh(key)
    return key


def is_usable(key: ApiKey) -> bool:
    """Whether the API accepts `key` now: not revoked, not expired."""
    return key.revoked_at is None and (key.expires_at is None
                                       or key.expires_at > datetime.now(UTC))


def active_admin_key(session: Session) -> ApiKey | None:
    """The oldest key with the admin scope that is neither revoked nor expired, or None."""
    return session.scalar(
        select(ApiKey).where(ApiKey.revoked_at.is_(None), ApiKey.scopes.contains(["admin"]),
                             or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > func.now()))
        .order_by(ApiKey.id).limit(1))


def key_by_token(session: Session, token: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.token_hash == token_hash(token)))


def free_name(session: Session, base: str) -> str:
    """`base`, or `base-2`, `base-3`... whichever no key has."""
    taken = set(session.scalars(select(ApiKey.name).where(ApiKey.name.startswith(base))))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


async def fetch_active_key(conn: AsyncConnection, hashed: str) -> Any | None:
    """The key whose token hashes to `hashed`, neither revoked nor expired (id, name, owner, scopes,
    token_hash), or None; notes its use at most every TOUCH_EVERY_S."""
    cur = conn.cursor(row_factory=namedtuple_row)
    await cur.execute(
        "SELECT id, name, owner, scopes, token_hash, "
        "last_used_at IS NULL OR last_used_at < now() - make_interval(secs => %s) AS stale "
        "FROM api_key WHERE token_hash = %s AND revoked_at IS NULL "
        "AND (expires_at IS NULL OR expires_at > now())",
        (TOUCH_EVERY_S, hashed),
    )
    row = await cur.fetchone()
    if row is not None and row.stale:
        await cur.execute("UPDATE api_key SET last_used_at = now() WHERE id = %s", (row.id,))
    return row
