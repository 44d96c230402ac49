"""HTTP requests counted and timed per route template, method and status, for /metrics.

Labelled by the route's template (`/v1/jobs/{job_id}`), never the raw path, so that the
number of series stays bounded by the number of routes; a path no route matched is counted
as `unmatched`, and a method other than the usual seven as `other`. A request's time runs
from its arrival to its last body byte: a followed log or an event stream counts for as long
as it streams.

These live in each API process's own memory. With several uvicorn workers, cli/serve.py
sets PROMETHEUS_MULTIPROC_DIR and prometheus_client keeps them in files there instead, which
a scrape of any one process adds up (api/routes/prometheus.py).
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram

from api.db_watch import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "traindock_http_requests", "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"])
DURATION = Histogram(
    "traindock_http_request_duration_seconds",
    "time from a request's arrival to its response's last byte",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))

UNMATCHED = "unmatched"
# Any token is a method to HTTP: the others are counted together, so that a client cannot
# make new series by inventing them.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The template of the route that served the request; the router leaves it in the scope."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class HttpMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # unless a response starts: an exception that escapes becomes a 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            labels = (route_template(scope), method, str(status))
            REQUESTS.labels(*labels).inc()
            DURATION.labels(*labels).observe(time.perf_counter() - began)
