"""The worker's Celery app. Configuration is shared with the publisher (core/queue.py)."""

from __future__ import annotations

from core.queue import make_celery
from core.settings import get_settings
from worker import log_setup

app = make_celery(get_settings(), name="traindock-worker")
app.conf.include = ["worker.tasks"]
log_setup.connect()  # our log format on the handlers Celery makes
