"""traindock.webhooks.verify, the receiver's side, against the server's signer
(core/webhooks/signing.py) and the Standard Webhooks specification's published example."""

from __future__ import annotations

import base64
import secrets

import pytest

from core.webhooks import signing
from traindock import webhooks

# The example published with the Standard Webhooks specification.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
SIGNED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
HEADERS = {"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP),
           "webhook-signature": SIGNED}


def test_client_and_server_agree_on_the_published_example():
    assert webhooks.signature(SECRET, MSG_ID, TIMESTAMP, BODY) == SIGNED
    assert signing.signature(SECRET, MSG_ID, TIMESTAMP, BODY) == SIGNED
    assert webhooks.verify(SECRET, HEADERS, BODY, now=TIMESTAMP)
    assert signing.verify(SECRET, HEADERS, BODY, now=TIMESTAMP)


def test_what_the_server_signs_the_client_accepts():
    for _ in range(20):
        secret = signing.new_secret()
        body = secrets.token_bytes(secrets.randbelow(300))
        msg_id = f"msg_{secrets.token_hex(8)}"
        headers = signing.headers(secret, msg_id, TIMESTAMP, body)
        assert webhooks.verify(secret, headers, body, now=TIMESTAMP + 5)
        assert not webhooks.verify(signing.new_secret(), headers, body, now=TIMESTAMP + 5)


@pytest.mark.parametrize(("change", "accepted"), [
    ({}, True),
    ({"now": TIMESTAMP + 300}, True),
    ({"now": TIMESTAMP - 300}, True),
    ({"now": TIMESTAMP + 301}, False),  # too old: a replay
    ({"now": TIMESTAMP - 301}, False),  # from the future
    ({"body": BODY + b" "}, False),
    ({"secret": "whsec_" + base64.b64encode(b"another key").decode()}, False),
    ({"secret": "whsec_not base64!"}, False),
    ({"headers": {"webhook-id": "msg_other"}}, False),
    ({"headers": {"webhook-timestamp": "soon"}}, False),
    ({"headers": {"webhook-signature": "v1,AAAA"}}, False),
    ({"headers": {"webhook-signature": "v1,AAAA " + SIGNED}}, True),  # a rotated secret
    ({"headers": {"webhook-signature": "v1,é " + SIGNED}}, True),
    ({"headers": {"webhook-signature": ""}}, False),
])
def test_verify(change: dict, accepted: bool):
    headers = HEADERS | change.get("headers", {})
    assert webhooks.verify(change.get("secret", SECRET), headers, change.get("body", BODY),
                           now=change.get("now", TIMESTAMP)) is accepted


def test_missing_headers_and_header_case():
    for name in HEADERS:
        assert not webhooks.verify(SECRET, {k: v for k, v in HEADERS.items() if k != name},
                                   BODY, now=TIMESTAMP)
    # Frameworks hand headers over capitalised (Webhook-Id) or as they came.
    assert webhooks.verify(SECRET, {k.title(): v for k, v in HEADERS.items()}, BODY,
                           now=TIMESTAMP)


def test_now_defaults_to_the_clock():
    assert not webhooks.verify(SECRET, HEADERS, BODY)  # 2021's delivery is long past
