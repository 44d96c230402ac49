"""The worker's log lines in TRAINDOCK_LOG_FORMAT (core/log_format.py), each naming the job
and attempt it was logged for.

Celery configures the worker's logging itself; the signals below give the handlers it made
our format afterwards. `job_context` is entered around each job the worker supervises, and
`note_attempt` once the claim has told which attempt it is.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from celery import signals

from core.log_format import ATTEMPT, JOB_ID, resolve_format, use_format
from core.settings import get_settings


def format_handlers(logger: logging.Logger | None = None, **kwargs: object) -> None:
    fmt = resolve_format(get_settings().log_format)
    for handler in (logger or logging.getLogger()).handlers:
        use_format(handler, fmt)


def connect() -> None:
    signals.after_setup_logger.connect(format_handlers, weak=False)
    signals.after_setup_task_logger.connect(format_handlers, weak=False)


@contextmanager
def job_context(job_id: uuid.UUID | str) -> Iterator[None]:
    job_token = JOB_ID.set(str(job_id))
    attempt_token = ATTEMPT.set(None)
    try:
        yield
    finally:
        ATTEMPT.reset(attempt_token)
        JOB_ID.reset(job_token)


def note_attempt(attempt: int) -> None:
    ATTEMPT.set(attempt)
