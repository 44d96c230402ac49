"""How every traindock process formats its log lines: one JSON object per line for a log
collector, or plain text for a person at a terminal (TRAINDOCK_LOG_FORMAT).

The context a line belongs to (the HTTP request, the job and attempt) is held in context
variables, set where that work begins (api/request_id.py, worker/log_setup.py), and added to
every record by `ContextFilter`, so that no log call has to pass it.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Literal

LogFormat = Literal["auto", "json", "text"]

REQUEST_ID: ContextVar[str | None] = ContextVar("traindock_request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("traindock_job_id", default=None)
ATTEMPT: ContextVar[int | None] = ContextVar("traindock_attempt", default=None)

CONTEXT = (("request_id", REQUEST_ID), ("job_id", JOB_ID), ("attempt", ATTEMPT))
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# The attributes every LogRecord has; anything else on a record was passed in `extra=` and is
# written out as a field of its own.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message", *(name for name, _ in CONTEXT)}


def resolve_format(setting: LogFormat, stream: IO[str] | None = None) -> Literal["json", "text"]:
    """`auto`: text on a terminal, where a person reads it; JSON elsewhere (a file, a pipe, a
    container's log), where a collector does."""
    if setting != "auto":
        return setting
    stream = stream if stream is not None else sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no isatty, or closed
        return "json"


class ContextFilter(logging.Filter):
    """Copies the request id, job id and attempt of the current context onto the record
    (when the record does not carry its own), for both formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in CONTEXT:
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message; the context
    fields that are set; fields passed with `extra=`; and the traceback as `exc_info`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in CONTEXT:
            value = getattr(record, name, None)
            if value is None:
                value = var.get()
            if value is not None:
                entry[name] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def make_formatter(fmt: Literal["json", "text"]) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def use_format(handler: logging.Handler, fmt: Literal["json", "text"]) -> None:
    """Give an existing handler (one Celery or uvicorn made) our format and context."""
    handler.setFormatter(make_formatter(fmt))
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())


def uvicorn_log_config(fmt: Literal["json", "text"], level: str = "INFO") -> dict[str, Any]:
    """A logging.dictConfig for the API process, uvicorn's loggers included: its access log
    goes through the same handler, so each access line carries its request id."""
    formatter: dict[str, Any] = (
        {"()": "core.log_format.JsonFormatter"} if fmt == "json" else {"format": TEXT_FORMAT})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "core.log_format.ContextFilter"}},
        "formatters": {"default": formatter},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default",
                                 "filters": ["context"], "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": level, "propagate": True},
        },
    }
