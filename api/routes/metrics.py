"""/v1/jobs/{id}/metrics: series by name, paged by step."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import JobDep, SessionDep
from api.schemas import MetricsOut
from core.repo import metrics as metric_repo

router = APIRouter(prefix="/v1/jobs", tags=["metrics"])


@router.get("/{job_id}/metrics", response_model=MetricsOut)
def read_metrics(
    job: JobDep,
    session: SessionDep,
    names: Annotated[str | None, Query(description="comma-separated, e.g. train_loss,val_loss")]
    = None,
    since_step: Annotated[int, Query(ge=-1, description="only points with a larger step")] = -1,
    max_points: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> MetricsOut:
    """Points in step order. When a series has more than `max_points` after `since_step`,
    `next_since_step` says where to continue."""
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else None
    series, next_since = metric_repo.read_series(session, job.id, wanted, since_step, max_points)
    return MetricsOut(series=series, next_since_step=next_since)
