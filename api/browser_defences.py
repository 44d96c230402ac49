"""Defences against web pages the user visits: the API listens on loopback with no key by
default, so any page could otherwise send it requests (a form posted cross-site, a fetch with
a simple content type) or, through DNS rebinding, read its answers under a name it controls.

- The `Host` header must name this server (TRAINDOCK_ALLOWED_HOSTS): a rebinding page's
  requests carry its own name and get a 421.
- A state-changing request (POST, PUT, PATCH, DELETE) that a browser sends from another site
  gets a 403. Browsers say where a request comes from in `Sec-Fetch-Site` (and `Origin`);
  clients that are not browsers (curl, the CLI, services) send neither and pass.
- Every answer carries `X-Content-Type-Options: nosniff`, so a browser never runs a JSON or
  text answer as a script or a page.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import Settings

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Sec-Fetch-Site values of requests a page of this server made, or the user made directly.
OWN_SITE = frozenset({"same-origin", "none"})
# Answered whatever the Host: a liveness probe reaches the container by its address, and the
# answer says nothing a rebinding page could use.
ANY_HOST_PATHS = frozenset({"/healthz"})
NOSNIFF = (b"x-content-type-options", b"nosniff")


def host_name(host: str) -> str:
    """`example.org:8000` -> `example.org`, `[::1]:8000` -> `::1`, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The host names this server answers to; None when any is allowed (`*`)."""
    names = {host_name(name) for name in settings.allowed_hosts.split(",") if name.strip()}
    if "*" in names:
        return None
    if not names:
        names = {"localhost", "127.0.0.1", "::1"}
    if settings.bind_host and settings.bind_host not in ("0.0.0.0", "::"):
        names.add(host_name(settings.bind_host))
    return frozenset(names)


def cross_site_problem(method: str, headers: dict[bytes, bytes]) -> str | None:
    """Why a browser's request from another site is refused, or None to let it through."""
    if method not in STATE_CHANGING:
        return None
    site = headers.get(b"sec-fetch-site", b"").decode("latin-1").strip().lower()
    origin = headers.get(b"origin", b"").decode("latin-1").strip()
    if site:
        if site in OWN_SITE:
            return None
        return (f"a {method} from a page of another site (Sec-Fetch-Site: {site}) is refused: "
                "a web page must not change jobs or datasets; send it from the dashboard, the "
                "CLI or a client that is not a browser")
    if not origin:
        return None  # not a browser: curl, the CLI, a service
    own = headers.get(b"host", b"").decode("latin-1").strip().lower()
    if origin.lower() != "null" and urlsplit(origin).netloc.lower() == own:
        return None
    return (f"a {method} from a page at {origin} is refused: a web page of another origin "
            "must not change jobs or datasets; send it from the dashboard, the CLI or a "
            "client that is not a browser")


class BrowserDefences:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.hosts = allowed_hosts(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != NOSNIFF[0]]
                message = {**message, "headers": [*headers, NOSNIFF]}
            await send(message)

        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        if (self.hosts is not None and scope["path"] not in ANY_HOST_PATHS
                and host_name(host) not in self.hosts):
            await _refuse(send_nosniff, 421, (
                f"this server does not answer to the host name {host_name(host)!r}; add it to "
                "TRAINDOCK_ALLOWED_HOSTS (comma-separated names, or * for any) if it is one of "
                "its names"))
            return
        if (problem := cross_site_problem(scope["method"], headers)) is not None:
            await _refuse(send_nosniff, 403, problem)
            return
        await self.app(scope, receive, send_nosniff)


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
