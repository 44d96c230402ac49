"""/healthz: is the API up, and can it reach PostgreSQL and the broker? On the event loop,
with the API's own pooled connections: load balancers call it often, and a check that opened
a connection to Redis each time cost more than any other route. Each check is bounded by
TRAINDOCK_DB_ANSWER_TIMEOUT_S: a database that hangs is reported, not waited for."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.db_watch import bounded, retry_after_s
from core.settings import Settings

router = APIRouter(tags=["health"])


async def _select_one(request: Request) -> None:
    async with request.app.state.async_engine.connect() as conn:
        await conn.exec_driver_sql("SELECT 1")


async def _database_ok(request: Request) -> tuple[bool, str]:
    watch = request.app.state.database_watch
    if watch.down.is_set():
        return False, watch.detail
    problem = await bounded(_select_one(request), watch.timeout_s, watch.orphans)
    return problem is None, problem or "ok"


def _redis_client(request: Request, settings: Settings):
    """One client (and its connection pool) per process, made on first use."""
    client = getattr(request.app.state, "health_redis", None)
    if client is None:
        import redis.asyncio

        client = request.app.state.health_redis = redis.asyncio.Redis.from_url(
            settings.broker_url, socket_timeout=1, socket_connect_timeout=1)
    return client


async def _broker_ok(request: Request, settings: Settings) -> tuple[bool, str]:
    if settings.broker_url.startswith("filesystem://"):
        folder = settings.broker_dir / "queue"
        ok = folder.is_dir() and os.access(folder, os.W_OK)
        return ok, "ok" if ok else f"{folder} is not a writable folder"
    try:
        await _redis_client(request, settings).ping()
        return True, "ok"
    except Exception as exc:
        return False, str(exc)[:200]


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """200 when PostgreSQL and the broker answer; 503 naming the part that does not."""
    db_ok, db_detail = await _database_ok(request)
    broker_ok, broker_detail = await _broker_ok(request, request.app.state.settings)
    healthy = db_ok and broker_ok
    return JSONResponse(
        status_code=200 if healthy else 503,
        headers={} if healthy else {
            "Retry-After": str(retry_after_s(request.app.state.database_watch))},
        content={
            "status": "ok" if healthy else "degraded",
            "database": {"ok": db_ok, "detail": db_detail},
            "broker": {"ok": broker_ok, "detail": broker_detail},
        },
    )
