"""The bodies of /v1/keys and /v1/usage."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from core.api_keys import NAME_PATTERN
from models.strict import StrictModel

# Anchored: pydantic searches a pattern anywhere in the value.
NAME = f"^{NAME_PATTERN.pattern}$"


class KeyCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100, pattern=NAME, description="unique across "
                      "the server; letters, digits, '.', '_', '-', '@', starting with a letter "
                      "or digit")
    scopes: list[Literal["read", "submit", "admin"]] = Field(
        min_length=1, max_length=3, description="read: GET; submit: create, cancel, delete; "
        "admin: every owner's resources. A key that is not an admin's can only grant scopes "
        "it holds itself")
    owner: str | None = Field(None, min_length=1, max_length=100, pattern=NAME, description="whose "
                              "resources the key makes and sees; default: the caller's owner "
                              "(only an admin key may name another)")
    expires_in_days: float | None = Field(None, gt=0, le=3650, description="refused after "
                                          "this many days; null: until revoked")


class KeyOut(BaseModel):
    id: int
    name: str
    owner: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    state: Literal["active", "expired", "revoked"]


class KeyCreated(KeyOut):
    token: str = Field(description="the key itself, shown only in this answer: send it as "
                       "'Authorization: Bearer <token>'")


class UsageOut(BaseModel):
    owner: str
    stored_bytes: int = Field(description="the owner's datasets and checkpoints")
    max_stored_bytes: int | None = Field(description="TRAINDOCK_MAX_STORED_BYTES_PER_OWNER; "
                                         "null: no limit")
    active_jobs: int = Field(description="queued and running")
    max_active_jobs: int | None = Field(description="TRAINDOCK_MAX_ACTIVE_JOBS_PER_OWNER; "
                                        "null: no limit")
