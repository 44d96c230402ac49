"""Checking a webhook delivery from traindock, as Standard Webhooks (standardwebhooks.com)
signs it: `webhook-signature` holds space-separated `v1,<base64 HMAC-SHA256>` of
`"{webhook-id}.{webhook-timestamp}.{body}"`, keyed with the base64-decoded part of the
secret after `whsec_`. The server's side is core/webhooks/signing.py; this client imports no
server code, so the ~15 lines are repeated here and tests/test_client_webhooks.py checks both
against the specification's published example."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

PREFIX = "whsec_"
TOLERANCE_S = 300  # older or newer deliveries are refused: a replay, or a wrong clock


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64>`: the signature traindock sends for this delivery."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes,
           now: float | None = None) -> bool:
    """Whether `body` (the raw bytes as received) was signed with `secret` within the last
    (or next) 300 s of `now` (default: the clock). Header names in any case; a missing or
    malformed header, or a malformed secret, is False, never an exception."""
    lower = {name.lower(): value for name, value in headers.items()}
    try:
        msg_id, timestamp = lower["webhook-id"], int(lower["webhook-timestamp"])
        expected = signature(secret, msg_id, timestamp, body)
    except (KeyError, ValueError, binascii.Error):
        return False
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        return False
    return any(hmac.compare_digest(expected.encode(), given.encode())
               for given in lower.get("webhook-signature", "").split())
