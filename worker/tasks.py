"""Celery tasks and worker hooks. The message carries only the job id; the database holds
the rest."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from celery import signals
from celery.exceptions import Reject
from celery.worker import state as worker_state

from core.db import Database
from core.queue import TRAIN_TASK, Publisher
from core.settings import get_settings
from worker.background import Background
from worker.celery_app import app
from worker.log_setup import job_context
from worker.spawn import WARM
from worker.supervisor import supervise_job

SHUTTING_DOWN = threading.Event()
PUBLISHER = Publisher(get_settings(), app)
# The worker process's one database handle (the solo pool: the task runs in this process).
DATABASE = Database.connect(get_settings())
_background: list[Background] = []


class LeftForTheNextWorker(Reject):
    """A job's message handed back to the broker, unclaimed, by a worker that is stopping."""


class _NoTracebackForLeftJobs(logging.Filter):
    """Celery logs every rejected message with a traceback; a job left for the next worker is
    no error, and one line says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], LeftForTheNextWorker):
            record.exc_info, record.exc_text, record.levelno = None, None, logging.INFO
            record.levelname = "INFO"
        return True


logging.getLogger("celery.app.trace").addFilter(_NoTracebackForLeftJobs())


def shutting_down() -> bool:
    return SHUTTING_DOWN.is_set() or bool(worker_state.should_stop) or bool(
        worker_state.should_terminate
    )


@app.task(name=TRAIN_TASK, bind=True)
def train_job(self, job_id: str) -> str:
    if shutting_down():
        # A message can still arrive after the stop (the solo pool's loop drains the broker
        # once more), often the very job this worker has just stopped and requeued. Claimed,
        # it would start a training process only to stop it at once, spending an attempt and
        # a preemption. Handed back to the broker untouched, it waits for the next worker.
        raise LeftForTheNextWorker(
            f"job {job_id} left for the next worker: this one is shutting down", requeue=True)
    owner = f"{socket.gethostname()}:{os.getpid()}:{self.request.hostname or 'worker'}"
    with job_context(job_id):
        return supervise_job(DATABASE, uuid.UUID(job_id), get_settings(), owner, PUBLISHER,
                             shutting_down)


@signals.worker_ready.connect
def start_background(sender=None, **kwargs) -> None:
    name = getattr(sender, "hostname", None) or f"worker-{os.getpid()}@{socket.gethostname()}"
    background = Background(DATABASE, get_settings(), PUBLISHER, name)
    background.start()
    _background.append(background)
    WARM.prepare(get_settings())  # here, in the main thread: the one its PDEATHSIG watches


@signals.worker_shutting_down.connect
def note_shutdown(**kwargs) -> None:
    SHUTTING_DOWN.set()


@signals.worker_shutdown.connect
def stop_background(**kwargs) -> None:
    while _background:
        _background.pop().stop()
    WARM.discard()
