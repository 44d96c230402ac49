"""Signing a delivery as the Standard Webhooks scheme does (standardwebhooks.com): the
headers `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`,
`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the secret's bytes
(`whsec_<base64>`). Receivers verify with `verify` or any Standard Webhooks library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
TOLERANCE_S = 300  # a receiver refuses deliveries older or newer than this


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, msg_id, timestamp, body),
            "content-type": "application/json"}


def verify(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    """Whether a delivery is signed with `secret` and recent. `headers` with lower-case
    names; several signatures (a secret being rotated) are separated by spaces."""
    try:
        msg_id, timestamp = headers["webhook-id"], int(headers["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > TOLERANCE_S:
        return False
    expected = signature(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, given)
               for given in headers.get("webhook-signature", "").split())
