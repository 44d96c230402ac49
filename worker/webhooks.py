"""Delivering webhooks: every worker runs a pass each second (worker/background.py) that
claims the due deliveries (core/repo/webhooks.py), POSTs each, signed, to the address its
URL was checked to resolve to, and records the answer. A delivery answered with anything but
a 2xx, or not at all, is retried with exponential backoff until TRAINDOCK_WEBHOOK_GIVE_UP_S
after its event. Redirects are not followed, and nothing a receiver sends back is stored or
logged beyond its status code."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import httpx

from core.api_keys import LOCAL_OWNER
from core.db import Database
from core.repo import webhooks as webhook_repo
from core.settings import Settings
from core.webhooks.address import Destination, RefusedDestination, resolve
from core.webhooks.signing import headers

log = logging.getLogger(__name__)

BATCH = 20


def deliver_due(db: Database, settings: Settings) -> int:
    """One pass: send what is due. Returns how many were delivered."""
    lease_s = settings.webhook_timeout_s * BATCH + 30
    with db.transaction() as session:
        due = webhook_repo.claim_due(session, BATCH, lease_s)
        # Each owner's deliveries are signed with that owner's secret (GET /v1/webhooks/secret
        # answers each API key with its owner's).
        secrets = {owner: webhook_repo.secret_for(session, owner)
                   for owner in {row.owner or LOCAL_OWNER for row in due}}
    delivered = 0
    for row in due:
        status, error = _send(row, secrets[row.owner or LOCAL_OWNER], settings)
        with db.transaction() as session:
            if status is not None and 200 <= status < 300:
                webhook_repo.record_delivered(session, row.id, status)
                delivered += 1
                continue
            now = datetime.now(UTC)
            retry_at = now + webhook_repo.retry_delay(settings.webhook_retry_base_s,
                                                      row.attempts + 1)
            gone = error.startswith("refused") or (
                retry_at - row.created_at).total_seconds() > settings.webhook_give_up_s
            webhook_repo.record_failed(session, row.id, status, error, None if gone else retry_at)
        log.warning("webhook %s for job %s (%s) failed: %s%s", row.id, row.job_id, row.event,
                    error, "; given up" if gone else "")
    return delivered


def _send(row, secret: str, settings: Settings) -> tuple[int | None, str]:
    """(status, "") for an answer, (status or None, why) for a failure."""
    try:
        destination = resolve(row.url, settings.webhook_allow_private)
    except RefusedDestination as exc:
        return None, f"refused: {exc}"
    body = json.dumps(row.payload, separators=(",", ":")).encode()
    signed = headers(secret, f"msg_{row.id}", int(time.time()), body)
    url, extensions = _pinned(row.url, destination)
    try:
        with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False,
                          trust_env=False) as client:
            response = client.post(url, content=body, extensions=extensions,
                                   headers={**signed, "host": _host_header(row.url),
                                            "user-agent": "traindock-webhooks"})
    except httpx.HTTPError as exc:
        return None, f"no answer ({type(exc).__name__})"
    if 200 <= response.status_code < 300:
        return response.status_code, ""
    return response.status_code, f"answered {response.status_code}"


def _pinned(url: str, destination: Destination) -> tuple[str, dict]:
    """The URL with its host replaced by the checked address, and TLS told the real name."""
    parts = urlsplit(url)
    address = f"[{destination.address}]" if ":" in destination.address else destination.address
    pinned = urlunsplit((parts.scheme, f"{address}:{destination.port}", parts.path or "/",
                         parts.query, ""))
    return pinned, ({"sni_hostname": destination.host} if parts.scheme == "https" else {})


def _host_header(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1]
