"""GET /v1/compare: what tells several jobs apart and their values side by side, for the
dashboard's compare page (core/compare_labels.py does the work; the page only renders)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from api.auth import PrincipalDep
from api.deps import SessionDep
from api.schemas import ValidationErrorOut
from core.compare_labels import ComparedJob, compare
from core.tables import Job

MAX_JOBS = 20

router = APIRouter(
    prefix="/v1/compare", tags=["jobs"],
    responses={422: {"model": ValidationErrorOut, "description": "the field to change"}},
)


class ComparedJobOut(BaseModel):
    id: str
    name: str
    state: str
    label: str = Field(description="what tells it apart: the fields that differ (\"optimizer."
                       "lr=0.01, dropout p=0.5\"), or its name when the architectures differ "
                       "(with its short id when names repeat)")
    differs: dict[str, Any] = Field(description="this job's value of each of `fields`")
    architecture: str = Field(description="its layers in one line, repeats folded")
    values: dict[str, dict[str, float]] = Field(
        description="best, final and test: metric -> value, for the metrics that have a "
        "better direction (best: the best over the run, min or max as the metric improves)")


class ComparisonOut(BaseModel):
    jobs: list[ComparedJobOut] = Field(description="in the order asked, found ones only")
    missing: list[str] = Field(description="ids asked for that name no job of the caller's")
    architectures_differ: bool = Field(description="the jobs' layer type sequences differ: "
                                       "labels are names, `architecture` says how")
    fields: list[str] = Field(description="the spec fields whose values differ, layers named "
                              "by type and rank (\"linear#2 out\"), not list index")
    metrics: dict[str, list[str]] = Field(description="best, final, test: the metrics shown")
    directions: dict[str, str] = Field(description="metric -> min or max: which way is better")
    leaders: dict[str, dict[str, list[str]]] = Field(
        description="best, final, test: metric -> the id(s) of the job(s) with the best value")


@router.get("", response_model=ComparisonOut)
def compare_jobs(
    session: SessionDep, principal: PrincipalDep,
    ids: Annotated[str, Query(min_length=1, description="job ids, comma-separated (2 to 20)")],
) -> ComparisonOut:
    """Several jobs side by side: a label each by what differs in their specs, their
    architectures when those differ, and their best, final and test values with the leader
    of each metric. Ids of no job of the caller's are listed in `missing`, not an error."""
    wanted = list(dict.fromkeys(part.strip() for part in ids.split(",") if part.strip()))
    if len(wanted) > MAX_JOBS:
        raise HTTPException(422, [{
            "field": "ids", "type": "value_error",
            "message": f"ids: {len(wanted)} jobs; compare at most {MAX_JOBS} at once"}])
    parsed = []
    for ref in wanted:
        try:
            parsed.append(uuid.UUID(ref))
        except ValueError:
            raise HTTPException(422, [{
                "field": "ids", "type": "value_error",
                "message": f"ids: {ref!r} is not a job id; give full ids (UUIDs) separated "
                           "by commas"}]) from None
    rows = []
    missing = []
    for job_id in parsed:
        job = session.get(Job, job_id)
        if job is None or not principal.may_see(job.owner):
            missing.append(str(job_id))
        else:
            rows.append(job)
    result = compare([ComparedJob(str(j.id), j.name, j.spec, j.summary) for j in rows])
    jobs = [ComparedJobOut(id=str(job.id), name=job.name, state=job.state, label=label,
                           differs=differs, architecture=arch, values=values)
            for job, label, differs, arch, values in zip(
                rows, result.labels, result.differs, result.architectures, result.values,
                strict=True)]
    return ComparisonOut(jobs=jobs, missing=missing,
                         architectures_differ=result.architectures_differ, fields=result.fields,
                         metrics=result.metrics, directions=result.directions,
                         leaders=result.leaders)
