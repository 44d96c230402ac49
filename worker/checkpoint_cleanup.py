"""A job's checkpoint files once its training process has exited: no file without a row
(a write the process was killed in), and, for a job that has ended, only the checkpoints that
TRAINDOCK_KEEP_CHECKPOINTS_FINISHED keeps. Run by the supervisor (worker/supervisor.py)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from core.checkpoint_files import job_checkpoint_folder, remove_unrecorded
from core.checkpoint_retention import beyond_retention
from core.db import Database
from core.repo import checkpoints as checkpoint_repo
from core.repo import jobs as job_repo
from core.settings import Settings

log = logging.getLogger(__name__)


def tidy_ended_job(db: Database, job_id: uuid.UUID, settings: Settings) -> None:
    """After the job's last attempt has exited: apply the finished jobs' retention, then
    remove the files no row names. Never raises: a job's end is recorded already, and what is
    left here is removed by the next call for the job or with the job (DELETE /v1/jobs/{id})."""
    try:
        with db.transaction() as session:
            rows = checkpoint_repo.list_checkpoints(session, job_id)
            doomed = []
            keep = settings.keep_checkpoints_finished
            job = job_repo.get_job(session, job_id)
            if keep and job is not None:
                doomed = beyond_retention(rows, job.spec, keep)
                checkpoint_repo.delete_checkpoints(session, job_id, [c.id for c in doomed])
            kept = [c.path for c in rows if c not in doomed]
        for checkpoint in doomed:
            Path(checkpoint.path).unlink(missing_ok=True)
        remove_unrecorded(job_checkpoint_folder(settings.checkpoint_dir, job_id), kept)
    except Exception:
        log.exception("job %s: could not tidy its checkpoint files", job_id)
