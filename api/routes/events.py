"""/v1/jobs/{id}/events: server-sent events (state, progress, new metric points)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1/jobs", tags=["events"])
