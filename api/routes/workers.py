"""/v1/workers: the workers that have reported in, and whether they are alive."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from api.auth import PrincipalDep
from api.deps import SessionDep, SettingsDep
from api.schemas import WorkerOut
from core.repo import workers as worker_repo

router = APIRouter(prefix="/v1/workers", tags=["workers"])


@router.get("", response_model=list[WorkerOut])
def list_workers(session: SessionDep, settings: SettingsDep, principal: PrincipalDep
                 ) -> list[WorkerOut]:
    """Most recently seen first. A worker is `alive` when it reported within three heartbeat
    intervals and has not said it stopped. `current_job_id` is shown to an admin key only:
    another owner's job id is not for everyone to see."""
    now = datetime.now(UTC)
    horizon = 3 * settings.worker_heartbeat_s
    return [
        WorkerOut(
            name=w.name, host=w.host, pid=w.pid, devices=w.devices,
            current_job_id=w.current_job_id if principal.is_admin else None,
            started_at=w.started_at,
            last_seen_at=w.last_seen_at, stopped_at=w.stopped_at,
            alive=w.stopped_at is None and (now - w.last_seen_at).total_seconds() < horizon,
        )
        for w in worker_repo.list_workers(session)
    ]
