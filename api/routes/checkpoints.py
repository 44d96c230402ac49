"""/v1/jobs/{id}/checkpoints: list (the best one marked) and download."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from api.deps import JobDep, SessionDep, SettingsDep
from api.schemas import CheckpointOut
from core.best_checkpoint import best_checkpoint
from core.repo import checkpoints as checkpoint_repo
from core.tables import Job

router = APIRouter(prefix="/v1/jobs", tags=["checkpoints"])


def download_name(job: Job, step: int) -> str:
    """`<job name>-<id8>-step-<n>.pt`: the id keeps two jobs of one name apart on disk."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", job.name).strip("._") or "job"
    return f"{name}-{str(job.id)[:8]}-step-{step}.pt"


@router.get("/{job_id}/checkpoints", response_model=list[CheckpointOut])
def list_checkpoints(job: JobDep, session: SessionDep) -> list[CheckpointOut]:
    """In step order. `best: true` marks the checkpoint with the best monitored metric."""
    rows = checkpoint_repo.list_checkpoints(session, job.id)
    best = best_checkpoint(rows, job.spec)
    return [CheckpointOut(id=c.id, step=c.step, epoch=c.epoch, sha256=c.sha256, size=c.size,
                          metrics=c.metrics, created_at=c.created_at, best=c is best,
                          filename=download_name(job, c.step))
            for c in rows]


@router.get("/{job_id}/checkpoints/{checkpoint_id}/download")
def download_checkpoint(
    job: JobDep, checkpoint_id: int, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    """The checkpoint file (load it with `torch.load(path, weights_only=True)`), named as its
    listing's `filename`."""
    row = checkpoint_repo.get_checkpoint(session, job.id, checkpoint_id)
    if row is None:
        raise HTTPException(404, f"job {job.id} has no checkpoint {checkpoint_id}")
    path = Path(row.path).resolve()
    if not path.is_relative_to(settings.checkpoint_dir) or not path.is_file():
        raise HTTPException(410, f"checkpoint {checkpoint_id}'s file is no longer on disk")
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=download_name(job, row.step),
        headers={"X-Checksum-Sha256": row.sha256},
    )
