"""/v1/jobs/{id}/metrics: series by name, downsampled in SQL; /metrics.csv: every point."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from api.auth import request_principal
from api.deps import JobDep, SessionDep, valid_job
from api.schemas import MetricNamesOut, MetricsOut
from core.repo import metrics as metric_repo

router = APIRouter(prefix="/v1/jobs", tags=["metrics"])

NamesQuery = Annotated[
    str | None, Query(description="comma-separated, e.g. train_loss,val_loss; all when absent")
]


def _names(names: str | None) -> list[str] | None:
    wanted = [n.strip() for n in (names or "").split(",") if n.strip()]
    return wanted or None


@router.get("/{job_id}/metrics", response_model=MetricsOut, response_model_exclude_none=True)
def read_metrics(
    job: JobDep,
    session: SessionDep,
    names: NamesQuery = None,
    since_step: Annotated[int, Query(ge=-1, description="only points with a larger step")] = -1,
    max_points: Annotated[
        int, Query(ge=1, le=100_000, description="most points per series; more are downsampled")
    ] = metric_repo.DEFAULT_MAX_POINTS,
) -> MetricsOut:
    """Every series in step order. One with more than `max_points` points after `since_step`
    is downsampled to at most `max_points` buckets of steps aligned to a multiple of their
    width (so that their edges stay put as the series grows): each gives its last point and
    its `min`, `max` and `mean`, and the series carries `downsampled: true`."""
    series = metric_repo.read_series(session, job.id, _names(names), since_step, max_points)
    return MetricsOut(series=series)


@router.get("/{job_id}/metrics/names", response_model=MetricNamesOut)
def read_metric_names(job: JobDep, session: SessionDep) -> MetricNamesOut:
    """The names of the job's series, for telling a misspelt `names=` from a metric the job
    has not logged yet: `/metrics` answers a name without points with no series, not an error."""
    return MetricNamesOut(names=metric_repo.logged_names(session, job.id))


def _attachment(filename: str) -> str:
    """As Starlette's FileResponse does it: a name that is not plain ASCII goes in filename*."""
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body as soon as the response ends. Starlette leaves the body of a download
    the client abandoned to the garbage collector, and with it a half-sent export's
    connection, blocked in COPY until the next full collection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]


async def _from_threadpool(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks of a blocking iterator, each read in a worker thread; closed in one too,
    whether the export ends or the client goes away (psycopg then cancels the COPY)."""
    try:
        while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(chunks.close)


@router.get(
    "/{job_id}/metrics.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "name,step,epoch,value,"
                     "wall_time; ordered by name, then step"},
               404: {"description": "no such job"}},
)
def export_metrics_csv(job_id: uuid.UUID, request: Request, names: NamesQuery = None
                       ) -> StreamingResponse:
    """Every point of the job (or of the named series) as CSV, streamed as PostgreSQL
    produces it. `wall_time` is ISO 8601 in UTC."""
    factory = request.app.state.sessionmaker
    # Not JobDep: a request-scoped session would stay checked out, idle in a transaction,
    # until the whole export has been sent.
    with factory() as session:
        job = valid_job(job_id, session, request_principal(request))
        filename = f"{job.name}-metrics.csv"
    wanted = _names(names)

    def chunks() -> Iterator[bytes]:
        with factory() as session:
            # One snapshot for every series of the export.
            conn = session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield from metric_repo.export_csv(conn, job_id, wanted)

    return ClosingStreamingResponse(_from_threadpool(chunks()), media_type="text/csv",
                                    headers={"Content-Disposition": _attachment(filename)})
