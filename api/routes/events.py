"""/v1/jobs/{id}/events: server-sent events (state, progress, new metric points, the
diagnosis when it changes).

Every event's `id` is the horizon: the highest step through which every point has been sent.
A running job's points at its current step may still be incomplete (epoch metrics are flushed
after the step's loss), so while it runs the horizon stays below `progress.step`; once the
job is final, every point is sent. A client that reconnects with `Last-Event-ID` gets the
points after that id, so across reconnections each point arrives exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.auth import request_principal
from api.deps import valid_job
from api.diagnosis import raw_diagnosis, served_diagnosis
from api.schemas import PointsEvent, StateEvent
from core.repo import jobs as job_repo
from core.repo import metrics as metric_repo
from core.tables import FINAL_STATES, Job

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["events"])

POLL_S = 0.5
PING_S = 15.0  # proxies close connections that stay silent for about a minute
# Per series and event: a client catching up on a long job gets its history in several
# events instead of one event of many megabytes.
POINTS_PER_EVENT = 5000


@dataclass(frozen=True)
class Snapshot:
    """What one poll saw, from one database snapshot."""

    state: StateEvent
    progress: dict[str, Any]
    diagnosis: dict[str, Any]  # as stored: compared to see a change, not sent as is
    series: dict[str, dict[str, list]]
    horizon: int
    final: bool
    caught_up: bool


def _complete_through(job: Job, stored: int | None) -> int:
    """The highest step whose points are all stored. The worker commits points together with
    `progress.step`, the step of the newest of them; points at that step may still be
    missing. `stored` (the highest step stored) can be lower than `progress.step` for a
    while after a resumed attempt trimmed what came after its checkpoint."""
    if stored is None:
        return -1
    if job.state in FINAL_STATES:
        return stored
    return min(int(job.progress.get("step", 0)) - 1, stored)


def poll_job(factory: sessionmaker[Session], job_id: uuid.UUID, horizon: int
             ) -> Snapshot | None:
    """One short transaction: the job, and its points after `horizon` that are complete.
    None when the job is gone."""
    with factory() as session:
        # The state, the progress, the highest stored step and the points must agree: between
        # separate reads a resumed attempt could trim and rewrite the points past its
        # checkpoint, and a horizon computed from one read would skip them in the next.
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        job = job_repo.get_job(session, job_id)
        if job is None:
            return None
        upto = _complete_through(job, metric_repo.last_step(session, job_id))
        series: dict[str, dict[str, list]] = {}
        reached = upto
        if upto > horizon:
            series, reached = metric_repo.read_new_points(session, job_id, horizon, upto,
                                                          POINTS_PER_EVENT)
        state = StateEvent(state=job.state, attempt=job.attempt, error=job.error,
                           finished_at=job.finished_at)
        # The horizon never goes back, not even when a resumed attempt rewinds its progress.
        return Snapshot(state=state, progress=dict(job.progress),
                        diagnosis=raw_diagnosis(job.summary), series=series,
                        horizon=max(horizon, reached), final=job.state in FINAL_STATES,
                        caught_up=reached >= upto)


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))  # compact, as pydantic writes the others


def _event(kind: str, data: str, horizon: int) -> str:
    return f"event: {kind}\nid: {horizon}\ndata: {data}\n\n"


async def _stream(request: Request, job_id: uuid.UUID, horizon: int, ping_s: float
                  ) -> AsyncIterator[str]:
    factory = request.app.state.sessionmaker
    sent_state: StateEvent | None = None
    sent_progress: dict[str, Any] | None = None
    # A job with no diagnosis sends none; a client has the current one from GET /v1/jobs/{id}.
    sent_diagnosis: dict[str, Any] = {}
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        try:
            # In a worker thread, so that the event loop never waits on the database; no
            # connection is held between polls.
            snap = await run_in_threadpool(poll_job, factory, job_id, horizon)
        except (OperationalError, InterfaceError) as exc:
            # The client keeps its stream (and its place) through a database outage.
            log.warning("events for job %s: %s", job_id, str(exc).splitlines()[0])
        else:
            if snap is None:
                return  # the job was deleted
            out = []
            if snap.state != sent_state:
                sent_state = snap.state
                out.append(_event("state", snap.state.model_dump_json(), horizon))
            if snap.series:
                points = PointsEvent.model_validate({"series": snap.series})
                out.append(_event("metrics", points.model_dump_json(exclude_none=True),
                                  snap.horizon))
            horizon = snap.horizon
            if snap.progress != sent_progress:
                sent_progress = snap.progress
                out.append(_event("progress", _json(snap.progress), horizon))
            if snap.diagnosis != sent_diagnosis:
                sent_diagnosis = snap.diagnosis
                served = served_diagnosis(snap.diagnosis).model_dump_json()
                out.append(_event("diagnosis", served, horizon))
            if snap.final and snap.caught_up:
                out.append(_event("end", _json({"state": snap.state.state}), horizon))
                yield "".join(out)
                return
            if out:
                yield "".join(out)
                quiet_since = time.monotonic()
            if not snap.caught_up:
                continue  # more history to send: no pause
        if time.monotonic() - quiet_since >= ping_s:
            yield ": ping\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(POLL_S)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "events `state`, `progress`, `metrics`, `diagnosis` "
                     "(when it changes), then `end`"},
               404: {"description": "no such job"}},
)
async def stream_events(
    job_id: uuid.UUID,
    request: Request,
    last_event_id_header: Annotated[
        int | None, Header(alias="Last-Event-ID", ge=-1,
                           description="sent by EventSource when it reconnects")
    ] = None,
    last_event_id: Annotated[
        int | None, Query(ge=-1, description="as the Last-Event-ID header, for clients that "
                          "cannot set headers; the header wins")
    ] = None,
    ping_s: Annotated[
        float, Query(ge=0.1, le=300, description="seconds of silence before a `: ping`")
    ] = PING_S,
) -> StreamingResponse:
    """The job's state, progress and new metric points as server-sent events. Each event's
    `id` is the step through which every point has been sent; reconnect with it as
    `Last-Event-ID` to continue without gaps or repeats. `diagnosis` comes whenever the job's
    diagnosis changes (as `GET /v1/jobs/{id}` serves it). After the final state's last points
    comes `event: end`, and the stream closes."""
    factory = request.app.state.sessionmaker

    def check() -> None:
        with factory() as session:
            valid_job(job_id, session, request_principal(request))

    # Before the stream starts, so that an unknown job is a plain 404.
    await run_in_threadpool(check)
    start = last_event_id_header if last_event_id_header is not None else last_event_id
    return StreamingResponse(
        _stream(request, job_id, -1 if start is None else start, ping_s),
        media_type="text/event-stream",
        # No caching, and no buffering by a proxy (nginx) in front of the API.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
