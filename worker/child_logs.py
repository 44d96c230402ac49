"""The training process's logging: readable text on stderr, which is the attempt's log that
`traindock logs` and the dashboard show (core/attempt_logs.py), and, unless
TRAINDOCK_LOG_FORMAT is `text`, a JSON-lines copy beside it, `attempt-<n>.jsonl`, for a log
collector, every line naming the job and the attempt.

The attempt's log stays text whatever the setting: it also holds what the process writes
without logging (a traceback torch prints, a warning), which no JSON format could hold, and
it is read by people. The copy is in the same folder, so deleting the job deletes it too.
"""

from __future__ import annotations

import logging
import uuid

from core.attempt_logs import attempt_log_path
from core.log_format import JsonFormatter
from core.settings import get_settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class JobFields(logging.Filter):
    """The job and attempt on every record, from whichever thread logs it: this process
    trains one attempt of one job, so they are constants, not context."""

    def __init__(self, job_id: uuid.UUID, attempt: int) -> None:
        super().__init__()
        self.job_id = str(job_id)
        self.attempt = attempt

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = self.job_id
        record.attempt = self.attempt
        return True


def start_logging() -> None:
    logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT)


def log_attempt(job_id: uuid.UUID, attempt: int) -> None:
    """From here on, every record names the job and attempt; and, unless the format is
    `text`, is also written as JSON to the attempt's .jsonl file."""
    settings = get_settings()
    fields = JobFields(job_id, attempt)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.addFilter(fields)
    if settings.log_format == "text":
        return
    path = attempt_log_path(settings.log_dir, job_id, attempt).with_suffix(".jsonl")
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:  # the text log is the one that matters; say why there is no copy
        logging.getLogger(__name__).warning("no JSON log at %s: %s", path, exc)
        return
    handler.setFormatter(JsonFormatter())
    handler.addFilter(fields)
    root.addHandler(handler)


def end_attempt_logging() -> None:
    """Undo log_attempt: a warm process that trains another job names that one instead."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        for stale in [f for f in handler.filters if isinstance(f, JobFields)]:
            handler.removeFilter(stale)
        if isinstance(handler, logging.FileHandler) and isinstance(handler.formatter,
                                                                   JsonFormatter):
            root.removeHandler(handler)
            handler.close()
