"""Engines and sessions. One engine per process, created from the settings."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)


def connect_args(settings: Settings, statement_timeout: bool = False) -> dict[str, object]:
    """libpq's connection options. Keepalives and a TCP user timeout notice a server whose
    host or network is gone (a hung server on a live host is api/db_watch.py's to notice).
    The statement timeout is for the API, whose statements are all short: a worker's bulk
    writes may legitimately run longer."""
    args: dict[str, object] = {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
    }
    if statement_timeout:
        args["options"] = f"-c statement_timeout={int(settings.db_statement_timeout_s * 1000)}"
    return args


def make_engine(settings: Settings, pool_size: int = 5, statement_timeout: bool = False
                ) -> Engine:
    return create_engine(
        settings.sqlalchemy_url,
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args=connect_args(settings, statement_timeout),
    )


class FairAsyncEngine:
    """An async engine whose connections are handed out first come, first served.

    SQLAlchemy's async pool waits on an asyncio.Queue, and a request that arrives just as a
    connection comes back takes it ahead of the ones already waiting, which go to the back
    of the line: under load, a few requests wait many times longer than the rest
    (tests/test_async_engine.py; the figures in docs/benchmarks.md). asyncio.Semaphore
    queues its waiters in order (and does not let a newcomer pass them), so with one permit
    per pooled connection the pool itself never has a waiter."""

    def __init__(self, engine: AsyncEngine, size: int) -> None:
        self.engine = engine
        self._gate = asyncio.Semaphore(size)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        async with self._gate, self.engine.connect() as conn:
            yield conn


def make_async_engine(settings: Settings, pool_size: int = 10) -> FairAsyncEngine:
    """The API's engine for the routes that run on the event loop (reading a job, submitting
    one). A route in the thread pool pays for a thread hop and, on a loaded API, for the wait
    to take the GIL back after each round trip to PostgreSQL: GET /v1/jobs/{id} served
    twice as many requests once it moved here. AUTOCOMMIT: only single statements run on
    it, each its own transaction, so none needs a BEGIN or a ROLLBACK. No overflow: a
    connection opened for a burst and closed after it costs more than waiting for one."""
    engine = create_async_engine(
        settings.sqlalchemy_url,
        isolation_level="AUTOCOMMIT",
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        connect_args=connect_args(settings, statement_timeout=True),
    )
    return FairAsyncEngine(engine, pool_size)


class Database:
    """A process's one handle on PostgreSQL: its engine, and the transactions taken on it.
    Created once where the process starts (the worker, the training process) and passed
    to what needs it, so that every write goes through the same pool and the same rules."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def connect(cls, settings: Settings, pool_size: int = 5) -> Database:
        """No connection is opened here: the pool opens one on first use."""
        return cls(make_engine(settings, pool_size=pool_size))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction that commits on success and rolls back on error.
        `session.connection()` is its connection, for statements below the ORM (COPY)."""
        with self._sessions() as session, session.begin():
            yield session

    def read(self) -> Session:
        """A session for reads (`with db.read() as session:`); nothing is committed."""
        return self._sessions()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))


def retry_database(action: Callable[[], T], what: str, budget_s: float) -> T:
    """Run `action`, retrying with exponential backoff (0.5 s up to 10 s) while the database
    is unreachable, for at most `budget_s` seconds; then the last error is raised."""
    deadline = time.monotonic() + budget_s
    delay = 0.5
    while True:
        try:
            return action()
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: database unreachable, retrying in %.1fs (%s)", what, delay,
                        str(exc).splitlines()[0])
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
