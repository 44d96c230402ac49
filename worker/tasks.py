"""Celery tasks. The message carries only the job id; the database holds the rest."""

from __future__ import annotations

import os
import socket
import uuid

from core.queue import TRAIN_TASK
from core.settings import get_settings
from worker.celery_app import app
from worker.supervisor import supervise_job


@app.task(name=TRAIN_TASK, bind=True)
def train_job(self, job_id: str) -> str:
    owner = f"{socket.gethostname()}:{os.getpid()}:{self.request.hostname or 'worker'}"
    return supervise_job(uuid.UUID(job_id), get_settings(), owner)
