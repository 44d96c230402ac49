"""Refuse oversized request bodies before they are read or parsed."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send


class BodySizeLimit:
    """413 for a body larger than `max_bytes`, by its Content-Length or, for a chunked
    body, as soon as the bytes received pass the limit. Meant for small JSON bodies; the
    `exempt` (method, path) pairs stream large bodies and enforce their own limits; a path
    ending in one of `larger`'s suffixes (e.g. "/predict", whose body may be a file) gets that
    limit instead."""

    def __init__(self, app: ASGIApp, max_bytes: int,
                 exempt: frozenset[tuple[str, str]] = frozenset(),
                 larger: dict[str, tuple[int, str]] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH")
                or (scope["method"], scope["path"].rstrip("/")) in self.exempt):
            await self.app(scope, receive, send)
            return
        limit, advice = self.max_bytes, "a job spec should be far smaller"
        for suffix, (larger, why) in self.larger.items():
            if scope["path"].rstrip("/").endswith(suffix):
                limit, advice = larger, why
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit, advice)
            return
        # Chunked: read up to the limit first, then hand the buffered body on.
        messages, received = [], 0
        while True:
            message = await receive()
            messages.append(message)
            received += len(message.get("body", b""))
            if received > limit:
                await self._refuse(send, limit, advice)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, limit: int, advice: str) -> None:
        body = json.dumps({"detail": f"request body is larger than {limit} bytes; "
                                     f"{advice}"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
