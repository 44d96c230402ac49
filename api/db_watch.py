"""Notices a PostgreSQL that has stopped answering, and answers 503 instead of waiting with it.

A server that hangs without closing its sockets (a stopped or frozen postmaster, a stalled
disk, a VM paused) is invisible to TCP: the kernel acknowledges what the API sends, so neither
keepalives nor a user timeout fire, and a statement waits for as long as the outage lasts,
holding its request, its connection and, for a route in the thread pool, its thread. The
server's own statement_timeout cannot fire either. So the API asks the database itself:

- `DatabaseWatch` sends `SELECT 1` on a connection of its own every `db_probe_interval_s`
  and calls the database down when no answer comes within `db_answer_timeout_s`;
- `DatabaseGate` answers 503 with Retry-After to every request that needs the database while
  it is down, and to every request still waiting for its response when it goes down. A
  response already streaming (server-sent events, a download) is left alone.

A request cut off this way may still finish its work once the database answers again (a
thread cannot be stopped): a client that retries after the 503 must retry an idempotent
request, which every write here is (submissions with an Idempotency-Key).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import psycopg

from core.settings import Settings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Paths whose requests read or write the database. The dashboard's pages and its static files
# are served from the package, and /healthz bounds its own check (api/routes/health.py).
DATABASE_PATHS = ("/v1/",)


class DatabaseWatch:
    def __init__(self, settings: Settings) -> None:
        self.conninfo = settings.psycopg_url
        self.interval_s = settings.db_probe_interval_s
        self.timeout_s = settings.db_answer_timeout_s
        self.down = asyncio.Event()
        self.detail = "ok"
        self._conn: psycopg.AsyncConnection | None = None
        self.orphans: set[asyncio.Task] = set()

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval_s)

    async def check(self) -> bool:
        """One bounded probe: True when the database answered within the timeout."""
        problem = await bounded(self._select_one(), self.timeout_s, self.orphans)
        if problem is None:
            if self.down.is_set():
                log.warning("the database answers again")
            self.down.clear()
            self.detail = "ok"
            return True
        self._conn = None  # a connection that did not answer is never asked again
        if not self.down.is_set():
            log.warning("the database does not answer: %s", problem)
        self.detail = problem
        self.down.set()
        return False

    async def _select_one(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, connect_timeout=max(2, int(self.timeout_s)))
        await self._conn.execute("SELECT 1")


async def bounded(work: Awaitable[object], timeout_s: float, orphans: set[asyncio.Task]
                  ) -> str | None:
    """None when `work` finished within `timeout_s`, else what went wrong. Work that overran
    is cancelled but not waited for: psycopg spends up to ten seconds cancelling a statement
    on a server that does not answer, and the caller must not wait with it."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        orphans.add(task)
        task.add_done_callback(_forget(orphans))
        return f"no answer within {timeout_s:g} s"
    exc = task.exception()
    if exc is not None:
        return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return None


def _forget(orphans: set[asyncio.Task]) -> Callable[[asyncio.Task], None]:
    def forget(task: asyncio.Task) -> None:
        orphans.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved

    return forget


class DatabaseGate:
    """ASGI middleware: 503 instead of a wait on a database that does not answer."""

    def __init__(self, app: ASGIApp, watch: DatabaseWatch) -> None:
        self.app = app
        self.watch = watch
        self.orphans: set[asyncio.Task] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(DATABASE_PATHS):
            await self.app(scope, receive, send)
            return
        if self.watch.down.is_set():
            await self._unavailable(send)
            return

        answered = False  # by this gate: the route's own messages are dropped from then on
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        route = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        went_down = asyncio.ensure_future(self.watch.down.wait())
        try:
            await asyncio.wait({route, went_down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            went_down.cancel()
        if route.done() or started:
            await route
            return
        answered = True
        route.cancel()  # not awaited: a thread, or psycopg cancelling, may take a while
        self.orphans.add(route)
        route.add_done_callback(_forget(self.orphans))
        await self._unavailable(send)

    async def _unavailable(self, send: Send) -> None:
        body = json.dumps({"detail": f"the database is not answering ({self.watch.detail}); "
                                     "retry after a few seconds"}).encode()
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(retry_after_s(self.watch)).encode())]})
        await send({"type": "http.response.body", "body": body})


def retry_after_s(watch: DatabaseWatch) -> int:
    return max(1, round(watch.interval_s + watch.timeout_s))
