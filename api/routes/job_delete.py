"""DELETE /v1/jobs/{id}: a job that has ended, with its rows and its files.

A queued or running job is refused with 409: cancel it first. Deleting it under a worker
would race the worker's writes (a checkpoint recorded, a log line appended after the files
are gone); a cancel ends it within seconds, and then it can be deleted.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel

from api.auth import PrincipalDep
from api.deps import SessionDep, SettingsDep
from api.schemas import ValidationErrorOut
from core.checkpoint_files import remove_job_files
from core.repo.job_delete import delete_ended_job
from core.repo.jobs import get_job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class DeleteRefusedOut(BaseModel):
    detail: str


@router.delete(
    "/{job_id}", status_code=204, response_class=Response,
    responses={
        404: {"model": DeleteRefusedOut, "description": "no such job"},
        409: {"model": DeleteRefusedOut,
              "description": "the job is queued or running: cancel it first"},
        422: {"model": ValidationErrorOut, "description": "the id is not a job id"},
    },
)
def delete_job(job_id: uuid.UUID, session: SessionDep, settings: SettingsDep,
               principal: PrincipalDep) -> Response:
    """Delete a job that has ended (succeeded, failed, cancelled or pruned): its row, metric
    points, rollups and checkpoint rows, then its checkpoint files and logs. 409 while it is
    queued or running: `POST /v1/jobs/{id}/cancel` first."""
    job = get_job(session, job_id)
    if job is None or not principal.may_see(job.owner):  # another owner's: as if none
        raise HTTPException(404, f"no job with id {job_id}")
    state = delete_ended_job(session, job_id)
    if state is not None:
        session.rollback()
        raise HTTPException(
            409, f"job {job_id} is {state}; cancel it first (POST /v1/jobs/{job_id}/cancel), "
                 "then delete it once it has ended")
    session.commit()
    remove_job_files(settings.checkpoint_dir, settings.log_dir, job_id)
    return Response(status_code=204)
