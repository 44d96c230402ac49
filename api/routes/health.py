"""/healthz: is the API up, and can it reach PostgreSQL and the broker?"""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from core.settings import Settings

router = APIRouter(tags=["health"])


def _database_ok(request: Request) -> tuple[bool, str]:
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True, "ok"
    except Exception as exc:
        return False, str(exc).splitlines()[0][:200]


def _broker_ok(settings: Settings) -> tuple[bool, str]:
    if settings.broker_url.startswith("filesystem://"):
        folder = settings.broker_dir / "queue"
        ok = folder.is_dir() and os.access(folder, os.W_OK)
        return ok, "ok" if ok else f"{folder} is not a writable folder"
    import redis

    try:
        client = redis.Redis.from_url(settings.broker_url, socket_timeout=1,
                                      socket_connect_timeout=1)
        client.ping()
        client.close()
        return True, "ok"
    except Exception as exc:
        return False, str(exc)[:200]


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    """200 when PostgreSQL and the broker answer; 503 naming the part that does not."""
    db_ok, db_detail = _database_ok(request)
    broker_ok, broker_detail = _broker_ok(request.app.state.settings)
    healthy = db_ok and broker_ok
    return JSONResponse(
        status_code=200 if healthy else 503,
        content={
            "status": "ok" if healthy else "degraded",
            "database": {"ok": db_ok, "detail": db_detail},
            "broker": {"ok": broker_ok, "detail": broker_detail},
        },
    )
