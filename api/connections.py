"""psycopg's own connections for the routes and dependencies that run on the event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import Request


@asynccontextmanager
async def async_connection(request: Request) -> AsyncIterator[psycopg.AsyncConnection]:
    """psycopg's own connection, from the pool of the AUTOCOMMIT engine, for the routes that
    run on the event loop (core/repo/jobs_async.py). Taken in the route itself by one that
    must first wait for a thread (see api/deps.py valid_job)."""
    async with request.app.state.async_engine.connect() as conn:
        pooled = await conn.get_raw_connection()
        try:
            yield pooled.driver_connection
        except psycopg.OperationalError:
            await conn.invalidate()  # broken: not back into the pool
            raise
