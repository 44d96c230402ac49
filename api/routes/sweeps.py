"""/v1/sweeps: create, list, read, cancel, delete, promote. A sweep is its owner's, as a job
is: another owner's is a 404. Its trials are ordinary jobs (core/sweeps/driver.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.auth import PrincipalDep
from api.deps import DatasetLookupDep, PublisherDep, SessionDep, SettingsDep
from api.pagination import decode_cursor
from api.schemas import NOT_JSON, JobOut, ValidationErrorOut
from api.sweep_schemas import PromoteBody, SweepDetail, SweepOut, SweepPage, TrialOut
from core.checkpoint_files import remove_job_files
from core.db import Database
from core.jobspec import JobSpec, validate_job
from core.repo import jobs as job_repo
from core.repo import sweeps as sweep_repo
from core.repo.job_delete import delete_ended_job
from core.repo.usage import stored_bytes
from core.storage_quota import over_limit
from core.sweeps.check import check_sweep
from core.sweeps.driver import advance, trial_jobs
from core.sweeps.importance_cache import cached_importances
from core.sweeps.results import best_trial, trials_of
from core.sweeps.spec import SweepSpec
from core.tables import FINAL_STATES, Sweep

router = APIRouter(
    prefix="/v1/sweeps", tags=["sweeps"],
    responses={422: {"model": ValidationErrorOut, "description": "the field to change"}},
)


def valid_sweep(sweep_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or not principal.may_see(sweep.owner):  # another owner's: as if none
        raise HTTPException(404, f"no sweep with id {sweep_id}")
    return sweep


SweepDep = Annotated[Sweep, Depends(valid_sweep)]


def _database(request: Request) -> Database:
    return Database(request.app.state.engine)


@router.post("", status_code=201, response_model=SweepDetail, responses={
    **NOT_JSON, 200: {"model": SweepDetail, "description": "this Idempotency-Key created this "
                      "sweep already, from the same spec"},
    409: {"description": "this Idempotency-Key came with another sweep spec, or the owner "
          "stores TRAINDOCK_MAX_STORED_BYTES_PER_OWNER already"}})
def create_sweep(spec: Annotated[SweepSpec, Body()], request: Request, response: Response,
                 session: SessionDep, settings: SettingsDep, lookup: DatasetLookupDep,
                 publisher: PublisherDep, principal: PrincipalDep,
                 idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
                 ) -> SweepDetail:
    """Check the sweep (every trial spec it can produce; 422 naming the parameter), store it
    and queue its first trials. With an `Idempotency-Key` header, as POST /v1/jobs: the same
    key and spec return the sweep the first call created (200, no second sweep); the same key
    with another spec is a 409; each owner's keys are their own."""
    checked = check_sweep(spec, settings, lookup)
    document = checked.spec.model_dump(mode="json")
    if idempotency_key:
        existing = sweep_repo.sweep_by_idempotency_key(session, principal.owner, idempotency_key)
        if existing is not None:
            return _replay(session, existing, document, response)
    problem = over_limit(principal.owner, stored_bytes(session, principal.owner), 0,
                         settings.max_stored_bytes_per_owner)
    if problem:
        raise HTTPException(409, problem)
    sweep = Sweep(id=uuid.uuid4(), owner=principal.owner, name=checked.spec.display_name,
                  spec=document, trials=checked.trials, idempotency_key=idempotency_key)
    session.add(sweep)
    try:
        session.commit()
    except IntegrityError:  # lost a race on the same key: the winner's sweep is the answer
        session.rollback()
        existing = sweep_repo.sweep_by_idempotency_key(session, principal.owner,
                                                       idempotency_key or "")
        if existing is None:
            raise
        return _replay(session, existing, document, response)
    advance(_database(request), sweep.id, settings, publisher.publish)
    session.refresh(sweep)
    return _detail(session, sweep)


def _replay(session: Session, existing: Sweep, document: dict, response: Response
            ) -> SweepDetail:
    if existing.spec != document:
        raise HTTPException(409, "this Idempotency-Key was used with a different sweep spec; "
                            "use a new key")
    response.status_code = 200
    return _detail(session, existing)


@router.get("", response_model=SweepPage)
def list_sweeps(
    session: SessionDep, principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> SweepPage:
    """The caller's sweeps (an admin's: everyone's), newest first, as GET /v1/jobs pages:
    pass `next_cursor` back as `cursor` for the next page. Each carries what a list shows
    (state, best so far, trials ended of planned), so a list costs one request."""
    after = decode_cursor(cursor)
    rows, following = sweep_repo.list_sweeps(session, limit=limit, after=after,
                                             owner=principal.owner_filter)
    ended = sweep_repo.trials_ended(session, [s.id for s in rows])
    return SweepPage(items=[SweepOut.of(s, ended[s.id]) for s in rows],
                     next_cursor=following.encode() if following else None)


@router.get("/{sweep_id}", response_model=SweepDetail)
def get_sweep(sweep: SweepDep, session: SessionDep) -> SweepDetail:
    """The sweep, its trials (each repeat's job, objective and duration; mean and standard
    deviation over repeats), the best configuration and, with enough trials, Optuna's
    parameter importances. A read: it writes nothing."""
    return _detail(session, sweep)


def _detail(session: Session, sweep: Sweep) -> SweepDetail:
    spec = SweepSpec.model_validate(sweep.spec)
    jobs = trial_jobs(session, sweep.id)
    trials = trials_of(jobs, spec.objective)
    best = best_trial(trials, spec.objective.direction or "min")
    best_spec = None
    if best is not None:
        first = min(best.jobs, key=lambda j: j.repeat)
        best_spec = next(j.spec for j in jobs if str(j.id) == first.id)
    ended = sum(t.ended for t in trials)
    out = SweepOut.of(sweep, ended).model_dump()
    out["objective"] = {**out["objective"], "mode": spec.objective.direction}
    return SweepDetail(**out, spec=sweep.spec, trials=[TrialOut.of(t) for t in trials],
                       best_spec=best_spec,
                       importances=cached_importances(sweep.id, spec, trials))


@router.post("/{sweep_id}/cancel", status_code=202, response_model=SweepOut,
             responses={409: {"description": "the sweep has already ended"}})
def cancel_sweep(sweep: SweepDep, session: SessionDep) -> SweepOut:
    """Start no more trials; queued trials end at once, running ones within about a second."""
    locked = session.scalar(select(Sweep).where(Sweep.id == sweep.id).with_for_update())
    if locked.state in FINAL_STATES:
        session.rollback()
        raise HTTPException(409, f"sweep {sweep.id} has already ended ({locked.state})")
    locked.state = "cancelled"
    locked.finished_at = locked.updated_at = _now(session)
    for job in trial_jobs(session, sweep.id):
        if job.state not in FINAL_STATES:
            job_repo.request_cancel(session, job.id)
    session.commit()
    ended = sweep_repo.trials_ended(session, [locked.id])[locked.id]
    return SweepOut.of(locked, ended)


def _now(session: Session) -> datetime:
    return session.scalar(select(func.now()))


@router.delete("/{sweep_id}", status_code=204, response_class=Response,
               responses={409: {"description": "the sweep or one of its trials has not ended"}})
def delete_sweep(sweep: SweepDep, session: SessionDep, settings: SettingsDep) -> Response:
    """Delete an ended sweep with its trials' jobs, their rows and files. 409 while it or a
    trial is queued or running: cancel it first."""
    if sweep.state not in FINAL_STATES:
        raise HTTPException(409, f"sweep {sweep.id} is {sweep.state}; cancel it first (POST "
                            f"/v1/sweeps/{sweep.id}/cancel), then delete it")
    ids = [job.id for job in trial_jobs(session, sweep.id)]
    for job_id in ids:
        state = delete_ended_job(session, job_id)
        if state is not None:
            session.rollback()
            raise HTTPException(409, f"trial job {job_id} is still {state}; wait for it to "
                                "stop, then delete the sweep")
    session.delete(sweep)
    session.commit()
    for job_id in ids:
        remove_job_files(settings.checkpoint_dir, settings.log_dir, job_id)
    return Response(status_code=204)


@router.post("/{sweep_id}/promote", status_code=201, response_model=JobOut,
             responses={**NOT_JSON,
                        409: {"description": "no trial has produced the objective yet"}})
def promote(sweep: SweepDep, session: SessionDep, settings: SettingsDep,
            lookup: DatasetLookupDep, publisher: PublisherDep,
            body: Annotated[PromoteBody | None, Body()] = None) -> JobOut:
    """Submit the best configuration's spec (its first repeat's seed) as a job of its own,
    with `epochs` if given."""
    detail = _detail(session, sweep)
    if detail.best_spec is None:
        raise HTTPException(409, f"sweep {sweep.id} has no trial with a value of "
                            f"{detail.objective['metric']} yet; promote once one succeeded")
    body = body or PromoteBody()
    document = {**detail.best_spec, "name": body.name or f"{sweep.name}-best"}
    if body.epochs is not None:
        document["training"] = {**document["training"], "epochs": body.epochs}
    checked = validate_job(JobSpec.model_validate(document), settings, lookup)
    job = job_repo.create_job(
        session, name=checked.spec.display_name, spec=checked.spec.model_dump(mode="json"),
        max_attempts=checked.spec.max_attempts or settings.max_attempts,
        model_summary=checked.model_report(), total_steps=checked.estimated_steps,
        owner=sweep.owner)
    session.commit()
    publisher.publish(str(job.id))
    return JobOut.of(job)
