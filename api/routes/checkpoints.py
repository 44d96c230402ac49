"""/v1/jobs/{id}/checkpoints: list and download."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from api.deps import JobDep, SessionDep, SettingsDep
from api.schemas import CheckpointOut
from core.repo import checkpoints as checkpoint_repo

router = APIRouter(prefix="/v1/jobs", tags=["checkpoints"])


@router.get("/{job_id}/checkpoints", response_model=list[CheckpointOut])
def list_checkpoints(job: JobDep, session: SessionDep) -> list[CheckpointOut]:
    return [CheckpointOut.model_validate(c, from_attributes=True)
            for c in checkpoint_repo.list_checkpoints(session, job.id)]


@router.get("/{job_id}/checkpoints/{checkpoint_id}/download")
def download_checkpoint(
    job: JobDep, checkpoint_id: int, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    """The checkpoint file (load it with `torch.load(path, weights_only=True)`)."""
    row = checkpoint_repo.get_checkpoint(session, job.id, checkpoint_id)
    if row is None:
        raise HTTPException(404, f"job {job.id} has no checkpoint {checkpoint_id}")
    path = Path(row.path).resolve()
    if not path.is_relative_to(settings.checkpoint_dir) or not path.is_file():
        raise HTTPException(410, f"checkpoint {checkpoint_id}'s file is no longer on disk")
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"{job.name}-step-{row.step}.pt",
        headers={"X-Checksum-Sha256": row.sha256},
    )
