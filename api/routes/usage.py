"""GET /v1/usage: what the caller's owner holds against the server's per-owner limits."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import PrincipalDep
from api.deps import AsyncConnDep, SettingsDep
from api.key_schemas import UsageOut
from core.repo import jobs_async
from core.repo.usage import stored_bytes_async

router = APIRouter(prefix="/v1", tags=["keys"])


@router.get("/usage", response_model=UsageOut)
async def usage(conn: AsyncConnDep, settings: SettingsDep, principal: PrincipalDep
                ) -> UsageOut:
    """The caller's owner's stored bytes (datasets and checkpoints) and queued-plus-running
    jobs, beside the limits the server sets on them."""
    owner = principal.owner
    return UsageOut(owner=owner, stored_bytes=await stored_bytes_async(conn, owner),
                    max_stored_bytes=settings.max_stored_bytes_per_owner or None,
                    active_jobs=await jobs_async.count_active(conn, owner),
                    max_active_jobs=settings.max_active_jobs_per_owner or None)
