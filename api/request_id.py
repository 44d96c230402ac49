"""X-Request-ID: every request has an id, taken from the client (or a proxy in front) or made
here, echoed in the response, and written on every log line logged while serving it.

A pure ASGI middleware, outermost, so that every response carries the header, a 503 from
api/db_watch.py or a 413 from api/limits.py included. The id is held in a context variable
(core/log_format.py): uvicorn's access line is logged from inside the response's `send`, in
the same context, so it carries the id too.
"""

from __future__ import annotations

import json
import re
import uuid

from api.db_watch import ASGIApp, Message, Receive, Scope, Send
from core.log_format import REQUEST_ID

HEADER = b"x-request-id"
# What proxies send (a UUID, nginx's 32 hex digits, a trace id with dots or colons), and
# nothing that could forge a second header or a log field.
VALID_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER)
        text = given.decode("latin-1") if given is not None else None
        request_id = text if text is not None and VALID_ID.fullmatch(text) else new_request_id()
        token = REQUEST_ID.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message["headers"] = [*headers, (HEADER, request_id.encode())]
            await send(message)

        try:
            if text is not None and request_id != text:
                await _bad_request_id(send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


async def _bad_request_id(send: Send) -> None:
    body = json.dumps({"detail": "header X-Request-ID must be 1 to 128 characters of letters, "
                                 "digits and . _ : / + = @ -; send such an id, or leave the "
                                 "header out and the server makes one"}).encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
