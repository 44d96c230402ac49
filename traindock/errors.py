"""What can go wrong talking to the API, as one hierarchy. Every message says what to do;
`messages` holds them one per problem (a 422 may name several fields)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class FieldError:
    """One problem of a 422: `field` is the path to change (`model.layers[1]`,
    `query.state`, `path.job_id`), `message` says what to change, starting with that path."""

    field: str
    message: str
    type: str = ""


class TraindockError(Exception):
    """Any failed request. `status` is the HTTP status (None: no answer came).

    When the API answered, `response` is that answer, read whole (its headers and body), and
    `detail` the `detail` it sent, as sent: a sentence, or a list of `{field, message, type}`
    (see `field_errors`); None when it sent none. `messages` word them for a Python caller; a
    program that talks to people in other terms (a terminal's options, a web form's fields)
    can word its own from these. When no answer came, `__cause__` is httpx's exception."""

    response: httpx.Response | None = None
    detail: Any = None

    def __init__(self, messages: list[str] | str, status: int | None = None) -> None:
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        self.status = status
        super().__init__("; ".join(self.messages))

    @property
    def request_id(self) -> str | None:
        """The X-Request-ID the API gave the request: its logs carry it, so quote it to whoever
        runs the API."""
        return self.response.headers.get("x-request-id") if self.response is not None else None


def field_errors(detail: Any) -> list[FieldError]:
    """A `detail` list as FieldErrors; an item that is not an object becomes its text."""
    return [FieldError(str(item.get("field", "")), str(item.get("message", item)),
                       str(item.get("type", "")))
            if isinstance(item, dict) else FieldError("", str(item))
            for item in detail]


class NotFound(TraindockError):
    """404: no such job, checkpoint or attempt; 410: the checkpoint's file is gone."""


class Invalid(TraindockError):
    """422 (and 413, 415): the request does not validate. `errors` lists every field to
    change."""

    def __init__(self, errors: list[FieldError], status: int | None = 422) -> None:
        self.errors = errors
        super().__init__([e.message for e in errors], status)

    @property
    def fields(self) -> list[str]:
        return [e.field for e in self.errors]


class Conflict(TraindockError):
    """409: the job's state forbids it (cancel an ended job, delete a running one), or an
    Idempotency-Key was used with another spec."""


class Unauthorized(TraindockError):
    """401 or 403: the API key is missing, wrong, or may not do this."""


class Unavailable(TraindockError):
    """No usable answer: the API cannot be reached, timed out, or answered 5xx (or 429).
    `retry_after` is the server's Retry-After in seconds, when it sent one."""

    def __init__(self, messages: list[str] | str, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(messages, status)
        self.retry_after = retry_after


class ChecksumMismatch(TraindockError):
    """A downloaded file's SHA-256 is not the one the server listed; nothing was kept.
    `actual` is the SHA-256 of what came, `expected` the one the caller asked for and
    `header` the server's X-Checksum-Sha256 (each None when there was none)."""

    def __init__(self, messages: list[str] | str, actual: str, expected: str | None = None,
                 header: str | None = None) -> None:
        super().__init__(messages)
        self.actual, self.expected, self.header = actual, expected, header


class WaitTimeout(TraindockError, TimeoutError):
    """`Client.wait` ran out of time before the job reached a final state; `job` is the last
    state seen (None when the API never answered)."""

    def __init__(self, message: str, job: object | None = None) -> None:
        super().__init__(message)
        self.job = job
