"""traindock's Python client for other services: HTTP only, typed results, one exception
hierarchy. `from traindock.client import Client`; `traindock.webhooks.verify` checks a signed
delivery."""

from traindock.client import Client
from traindock.errors import (
    ChecksumMismatch,
    Conflict,
    Invalid,
    NotFound,
    TraindockError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)

__all__ = ["ChecksumMismatch", "Client", "Conflict", "Invalid", "NotFound", "TraindockError",
           "Unauthorized", "Unavailable", "WaitTimeout"]
