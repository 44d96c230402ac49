"""Webhook deliveries and secrets: claiming the due deliveries, recording how each went, and
a job's list. Rows are created by the job table's trigger (migration 0006)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from core.api_keys import LOCAL_OWNER
from core.tables import WebhookDelivery, WebhookSecret
from core.webhooks.signing import new_secret

# The due deliveries, each held for `lease` so that another worker's pass skips it while this
# one sends it; a worker lost mid-send leaves it to be sent again when the lease ends.
_CLAIM = text("""
UPDATE webhook_delivery SET next_attempt_at = now() + make_interval(secs => :lease)
WHERE id IN (
    SELECT id FROM webhook_delivery
    WHERE delivered_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
RETURNING id, job_id, event, url, payload, attempts, created_at,
    (SELECT job.owner FROM job WHERE job.id = webhook_delivery.job_id) AS owner
""")


def claim_due(session: Session, limit: int, lease_s: float) -> list:
    return list(session.execute(_CLAIM, {"limit": limit, "lease": lease_s}))


def record_delivered(session: Session, delivery_id: int, status: int) -> None:
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(
        attempts=WebhookDelivery.attempts + 1, last_status=status, last_error=None,
        delivered_at=datetime.now().astimezone()))


def record_failed(session: Session, delivery_id: int, status: int | None, error: str,
                  retry_at: datetime | None) -> None:
    """A failed attempt: retried at `retry_at`, or given up when that is None."""
    values: dict = {"attempts": WebhookDelivery.attempts + 1, "last_status": status,
                    "last_error": error[:500]}
    if retry_at is None:
        values["given_up_at"] = datetime.now().astimezone()
    else:
        values["next_attempt_at"] = retry_at
    session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                    .values(**values))


def list_for_job(session: Session, job_id: uuid.UUID) -> list[WebhookDelivery]:
    return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                                .order_by(WebhookDelivery.id)))


def secret_for(session: Session, owner: str = LOCAL_OWNER) -> str:
    """The owner's signing secret, created on first use."""
    session.execute(pg_insert(WebhookSecret).values(owner=owner, secret=new_secret())
                    .on_conflict_do_nothing())
    return session.scalar(select(WebhookSecret.secret).where(WebhookSecret.owner == owner))


def retry_delay(base_s: float, attempts: int) -> timedelta:
    """The wait before attempt `attempts + 1`: base, doubling, at most an hour."""
    return timedelta(seconds=min(base_s * 2 ** max(attempts - 1, 0), 3600.0))
