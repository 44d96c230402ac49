"""Webhooks: a job's deliveries, and the secret they are signed with."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import PrincipalDep
from api.deps import JobDep, SessionDep
from api.schemas import DeliveryOut, WebhookSecretOut
from core.repo import webhooks as webhook_repo

router = APIRouter(prefix="/v1", tags=["webhooks"])


@router.get("/jobs/{job_id}/deliveries", response_model=list[DeliveryOut])
def list_deliveries(job: JobDep, session: SessionDep) -> list[DeliveryOut]:
    """The job's webhook events in the order they happened, with how each delivery went."""
    rows = webhook_repo.list_for_job(session, job.id)
    return [DeliveryOut(
        id=d.id, event=d.event, url=d.url, payload=d.payload, attempts=d.attempts,
        last_status=d.last_status, last_error=d.last_error, created_at=d.created_at,
        next_attempt_at=None if d.delivered_at or d.given_up_at else d.next_attempt_at,
        delivered_at=d.delivered_at, given_up_at=d.given_up_at) for d in rows]


@router.get("/webhooks/secret", response_model=WebhookSecretOut)
def webhook_secret(session: SessionDep, principal: PrincipalDep) -> WebhookSecretOut:
    """The secret the deliveries of the API key's owner's jobs are signed with; a receiver
    verifies each delivery's `webhook-signature` with it (docs/integration.md). Each owner
    has its own, created on first read."""
    secret = webhook_repo.secret_for(session, principal.owner)
    session.commit()
    return WebhookSecretOut(secret=secret)
