"""/v1/jobs: submit, validate, list, read, cancel."""

from __future__ import annotations

import dataclasses
import math
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, HTTPException, Query, Request, Response
from psycopg import AsyncConnection
from starlette.concurrency import run_in_threadpool

from api.auth import PrincipalDep
from api.deps import (
    AsyncConnDep,
    DatasetLookupDep,
    JobDep,
    PublisherDep,
    SessionDep,
    SettingsDep,
    async_connection,
)
from api.pagination import decode_cursor
from api.schemas import (
    EXAMPLE_SPEC,
    NOT_JSON,
    JobListItem,
    JobOut,
    JobPage,
    ValidationErrorOut,
    ValidationOut,
)
from core.jobspec import JobSpec, ValidatedJob, validate_job
from core.queue import BackgroundPublisher
from core.repo import jobs as job_repo
from core.repo import jobs_async
from core.repo.job_ids import id_range
from core.repo.usage import stored_bytes_async
from core.settings import Settings
from core.spec_digest import tell_apart
from core.storage_quota import over_limit
from core.tables import JOB_STATES
from models.build import SpecError

router = APIRouter(
    prefix="/v1/jobs", tags=["jobs"],
    responses={422: {"model": ValidationErrorOut, "description": "the field to change"}},
)

SpecBody = Annotated[
    JobSpec, Body(openapi_examples={"digits-mlp": {"summary": "an MLP on digits",
                                                   "value": EXAMPLE_SPEC}})
]


# An input shape to build the network for instead of the dataset's: per sample, like the
# dataset's own ((features,), (C, L) or (C, H, W)), and bounded so that the summary stays cheap.
MAX_INPUT_DIMS = 4
MAX_INPUT_SIDE = 65_536
MAX_INPUT_FEATURES = 2**28


def _input_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not 1 <= len(parts) <= MAX_INPUT_DIMS or not all(p.isdigit() for p in parts):
        raise SpecError(
            "input_shape",
            f"{text!r} is not a shape: give 1 to {MAX_INPUT_DIMS} positive integers separated "
            "by commas, per sample without the batch, e.g. 1,64,64 for a one-channel 64x64 "
            "image",
        )
    shape = tuple(int(p) for p in parts)
    if min(shape) < 1 or max(shape) > MAX_INPUT_SIDE or math.prod(shape) > MAX_INPUT_FEATURES:
        raise SpecError(
            "input_shape",
            f"{shape} is out of range: each size from 1 to {MAX_INPUT_SIDE:,}, and at most "
            f"{MAX_INPUT_FEATURES:,} values per sample",
        )
    return shape


@router.post("/validate", response_model=ValidationOut, responses=NOT_JSON)
def validate(
    spec: SpecBody, settings: SettingsDep, lookup: DatasetLookupDep,
    input_shape: Annotated[str | None, Query(
        max_length=100, examples=["1,64,64"],
        description="build the network for this input shape (per sample, comma-separated) "
        "instead of the dataset's, e.g. to see that global pooling keeps a CNN's parameter "
        "count whatever the image size while a flatten head's grows; a job trains on the "
        "dataset's shape")] = None,
) -> ValidationOut:
    """Dry run: build the network on the meta device and report shapes and parameters."""
    checked = validate_job(spec, settings, lookup, _input_shape(input_shape))
    return ValidationOut(model=checked.model.as_dict(), dataset=dataclasses.asdict(checked.dataset),
                         warnings=checked.warnings,
                         named_warnings=[w.as_dict() for w in checked.named_warnings])


@router.post("", status_code=201, response_model=JobOut, responses={
    **NOT_JSON, 409: {"description": "this Idempotency-Key came with another job spec, or the "
                      "owner stores TRAINDOCK_MAX_STORED_BYTES_PER_OWNER already"},
    429: {"description": "the owner has TRAINDOCK_MAX_ACTIVE_JOBS_PER_OWNER queued or running "
          "jobs already (or the key's rate limit)"}})
async def submit(
    spec: SpecBody,
    request: Request,
    settings: SettingsDep,
    publisher: PublisherDep,
    lookup: DatasetLookupDep,
    response: Response,
    principal: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobOut:
    """Queue a job, owned by the API key's owner. With an `Idempotency-Key` header, the same
    key and body return the same job (200) and the same key with another body is a 409; each
    owner's keys are their own."""
    # Building the network on the meta device is CPU work: off the event loop, and before a
    # connection is taken, which must not wait for a thread (api/deps.py valid_job). The rest
    # is one or two statements, on the loop (see core/db.py make_async_engine).
    checked = await run_in_threadpool(validate_job, spec, settings, lookup)
    async with async_connection(request) as conn:
        return await _insert(conn, checked, settings, publisher, response, idempotency_key,
                             principal.owner)


async def _insert(conn: AsyncConnection, checked: ValidatedJob, settings: Settings,
                  publisher: BackgroundPublisher, response: Response,
                  idempotency_key: str | None, owner: str) -> JobOut:
    document = checked.spec.model_dump(mode="json")  # names the dataset version validated
    if idempotency_key:
        existing = await jobs_async.fetch_job_by_idempotency_key(conn, owner, idempotency_key)
        if existing is not None:
            return _replay(existing, document, response)
    limit = settings.max_active_jobs_per_owner
    if limit and await jobs_async.count_active(conn, owner) >= limit:
        raise HTTPException(
            429, f"{owner!r} has {limit} queued or running jobs, the most this server allows "
            "one owner (TRAINDOCK_MAX_ACTIVE_JOBS_PER_OWNER): wait for some to end, or cancel "
            "some", headers={"Retry-After": "60"})
    problem = over_limit(owner, await stored_bytes_async(conn, owner), 0,
                         settings.max_stored_bytes_per_owner)
    if problem:
        raise HTTPException(409, problem)
    job = await jobs_async.insert_job(
        conn,
        name=checked.spec.display_name,
        spec=document,
        max_attempts=checked.spec.max_attempts or settings.max_attempts,
        model_summary=checked.model_report(),
        total_steps=checked.estimated_steps,
        idempotency_key=idempotency_key,
        owner=owner,
    )
    if job is None:  # lost a race on the same key
        existing = await jobs_async.fetch_job_by_idempotency_key(conn, owner,
                                                                 idempotency_key or "")
        return _replay(existing, document, response)
    publisher.publish(str(job.id))
    return JobOut.of(job)


def _replay(existing, document: dict, response: Response) -> JobOut:
    if existing.spec != document:
        raise HTTPException(
            409, "this Idempotency-Key was used with a different job spec; use a new key"
        )
    response.status_code = 200
    return JobOut.of(existing)


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    principal: PrincipalDep,
    state: Annotated[Literal[JOB_STATES] | None, Query()] = None,  # type: ignore[valid-type]
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    id_prefix: Annotated[str | None, Query(
        min_length=1, max_length=36, description="only jobs whose id starts with this, e.g. the "
        "8 characters `traindock ls` prints")] = None,
) -> JobPage:
    """The caller's jobs (an admin's: everyone's), newest first. Pass `next_cursor` back as
    `cursor` for the next page. Each item has a
    `spec_digest` and the spec fields it `differs` in from the page's jobs of its name."""
    after = decode_cursor(cursor)
    if id_prefix is not None and id_range(id_prefix) is None:
        raise HTTPException(422, [{
            "field": "id_prefix", "type": "value_error",
            "message": f"id_prefix: {id_prefix!r} cannot start a job id; give the first "
                       "characters of one as `traindock ls` prints them, e.g. 3f2a6c1e",
        }])
    rows, following = job_repo.list_jobs(session, state=state, limit=limit, after=after,
                                         id_prefix=id_prefix, owner=principal.owner_filter)
    labels = tell_apart([(j.name, j.spec) for j in rows])
    items = [JobListItem.listed(j, digest, differs)
             for j, (digest, differs) in zip(rows, labels, strict=True)]
    return JobPage(items=items,
                   next_cursor=following.encode() if following else None)


@router.get("/{job_id}", response_model=JobOut)
async def get_job(job_id: uuid.UUID, conn: AsyncConnDep, principal: PrincipalDep) -> JobOut:
    """The job's state, progress, summary, spec and model. On the event loop: this is the
    endpoint clients poll."""
    job = await jobs_async.fetch_job(conn, job_id)
    if job is None or not principal.may_see(job.owner):  # another owner's: as if none
        raise HTTPException(404, f"no job with id {job_id}")
    return JobOut.of(job)


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut,
             responses={409: {"description": "the job has already ended"}})
def cancel(job: JobDep, session: SessionDep) -> JobOut:
    """Queued jobs end at once; a running job is stopped by its worker within about a second."""
    state = job_repo.request_cancel(session, job.id)
    session.commit()
    if state is None:
        raise HTTPException(409, f"job {job.id} has already ended ({job.state}); nothing to cancel")
    return JobOut.of(job_repo.get_job(session, job.id))

