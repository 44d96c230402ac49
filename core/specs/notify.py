"""`notify`: where a job's events are POSTed (webhooks, delivered by the workers)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from models.strict import StrictModel

WebhookEvent = Literal["queued", "running", "succeeded", "failed", "cancelled", "pruned"]
EVENTS: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled", "pruned")


class NotifySpec(StrictModel):
    url: str = Field(
        max_length=2000, examples=["https://ci.example.com/traindock-hook"],
        description="an http(s) URL that receives a signed JSON POST for each event; it must "
        "resolve to a public address unless the server allows private ones",
    )
    events: list[WebhookEvent] = Field(
        default_factory=lambda: list(EVENTS), min_length=1,
        description="which state changes to send: queued, running, succeeded, failed, "
        "cancelled, pruned (a sweep's pruner stopped the trial); a retried job is queued and "
        "running again",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("give an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("put no credentials in the URL: deliveries are signed, and the "
                             "receiver checks the signature (docs/integration.md)")
        return value

    @field_validator("events")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return sorted(set(value), key=EVENTS.index)
