"""Driving a sweep: `advance` tells the search what finished, asks for new configurations
until `parallelism` trials are queued or running and the budget is not spent, inserts them as
ordinary jobs, and ends the sweep when every trial has ended.

It is called wherever something may have changed: by the API when the sweep is created, by
a worker when a trial's job ends, and by the reaper on every pass, so that a process lost
between a trial's end and its call never stalls a sweep. Each call takes the sweep's row lock
(`SELECT ... FOR UPDATE`) and counts trials from the job rows it inserts in the same
transaction: two callers at once take turns, and the second sees the first's trials, so no
configuration is asked or run twice (job's unique (sweep_id, trial_number, trial_repeat) is
the backstop). The jobs are published after the commit, as a submitted job is; one whose
message is lost is published again by the reaper.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db import Database
from core.repo import datasets as dataset_repo
from core.repo import jobs as job_repo
from core.settings import Settings
from core.sweeps.results import Trial, TrialJob, best_summary, best_trial, trials_of
from core.sweeps.spec import SweepSpec
from core.sweeps.study import next_params
from core.sweeps.trial_spec import trial_document, trial_name
from core.tables import FINAL_STATES, Job, Sweep

if TYPE_CHECKING:
    from core.jobspec import DatasetLookup

log = logging.getLogger(__name__)

Publish = Callable[[str], object]  # True when the broker took the message


def stored_dataset_lookup(session: Session, owner: str) -> DatasetLookup:
    """Uploaded datasets by id, as the API's lookup describes them: a sweep's base names its
    dataset by id (resolved when the sweep was created), and only the owner's counts."""

    def lookup(key: str | uuid.UUID) -> Mapping[str, Any] | None:
        row = dataset_repo.get(session, key) if isinstance(key, uuid.UUID) else \
            dataset_repo.get_by_name(session, key, owner)
        if row is None or row.owner != owner:
            return None
        return {"id": str(row.id), "name": row.name, "sha256": row.sha256, "task": row.task,
                "input_shape": row.input_shape, "target_shape": row.target_shape,
                "num_classes": row.num_classes, "class_names": row.class_names,
                "feature_names": row.feature_names,
                "splits": row.splits}

    return lookup


def trial_jobs(session: Session, sweep_id: uuid.UUID) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.sweep_id == sweep_id)
                                .order_by(Job.trial_number, Job.trial_repeat)))


def advance(db: Database, sweep_id: uuid.UUID, settings: Settings, publish: Publish
            ) -> str | None:
    """One step of the sweep; returns its state afterwards (None: no such sweep)."""
    with db.transaction() as session:
        sweep = session.scalar(select(Sweep).where(Sweep.id == sweep_id).with_for_update())
        if sweep is None:
            return None
        if sweep.state in FINAL_STATES:
            return sweep.state
        new_jobs = _step(session, sweep, settings)
        state = sweep.state
    published = [job_id for job_id in new_jobs if publish(str(job_id)) is True]
    if published:
        with db.transaction() as session:
            job_repo.mark_published(session, published)
    return state


def _step(session: Session, sweep: Sweep, settings: Settings) -> list[uuid.UUID]:
    spec = SweepSpec.model_validate(sweep.spec)
    trials = trials_of(trial_jobs(session, sweep.id), spec.objective)
    active = sum(not t.ended for t in trials)
    created = sweep.asked
    now = session.scalar(select(func.now()))
    time_up = (spec.budget.max_minutes is not None
               and now > sweep.created_at + timedelta(minutes=spec.budget.max_minutes))
    new_jobs: list[uuid.UUID] = []
    lookup = stored_dataset_lookup(session, sweep.owner)
    room = _room(session, sweep.owner, settings)
    while (active < spec.parallelism and created < sweep.trials and not time_up
           and room >= spec.repeats):
        params = next_params(spec, trials, created)
        jobs = _insert_trial(session, sweep, spec, created, params, settings, lookup)
        trial = Trial(created, params)
        trial.jobs = [_pending(job) for job in jobs]
        trials.append(trial)
        new_jobs += [job.id for job in jobs if job.state == "queued"]
        active += not trial.ended
        room -= len(jobs)
        created += 1
    best = best_summary(best_trial(trials, spec.objective.direction or "min"))
    if best != sweep.best or created != sweep.asked:  # the reaper calls every few seconds
        sweep.best = best
        sweep.asked = created
        sweep.updated_at = func.now()
    if active == 0 and (created >= sweep.trials or time_up):
        sweep.state = "succeeded" if sweep.best else "failed"
        sweep.finished_at = func.now()
        if sweep.best is None:
            sweep.error = (f"no trial produced {spec.objective.metric}: every trial failed, "
                           "was cancelled or was pruned (see their jobs' errors)")
    elif sweep.state == "queued":
        sweep.state = "running"
    return new_jobs


def _room(session: Session, owner: str, settings: Settings) -> int:
    """Jobs the owner may still queue under TRAINDOCK_MAX_ACTIVE_JOBS_PER_OWNER, as a
    submission is held to; a sweep at the limit waits, and the reaper's pass tries again."""
    limit = settings.max_active_jobs_per_owner
    if not limit:
        return 1 << 30
    active = session.scalar(select(func.count()).select_from(Job).where(
        Job.owner == owner, Job.state.in_(("queued", "running"))))
    return limit - active


def _pending(job: Job) -> TrialJob:
    return TrialJob(str(job.id), job.trial_repeat, job.state, None, None, None)


def _insert_trial(session: Session, sweep: Sweep, spec: SweepSpec, number: int,
                  params: dict[str, Any], settings: Settings, lookup: DatasetLookup
                  ) -> list[Job]:
    """The trial's `repeats` jobs, owned by the sweep's owner. A configuration the job
    validation refuses (a sampled value inside a range the sweep's check could not try) is
    recorded as a failed job naming why, so that the search is told and moves on."""
    # Here rather than at the top: job validation builds the network with torch, which the
    # worker's own process (its reaper calls this module) otherwise never imports; only a
    # process that inserts trials pays for it.
    from core.sweeps import check
    from models.build import SpecError

    base = spec.base.model_dump(mode="json")
    jobs = []
    for repeat in range(spec.repeats):
        name = trial_name(spec.display_name, number, repeat, spec.repeats)
        document = trial_document(base, params, repeat, name)
        values = {"name": name, "spec": document, "max_attempts": settings.max_attempts,
                  "model_summary": {}, "total_steps": 0, "owner": sweep.owner}
        error = None
        try:
            checked = check.check_trial(spec, base, params, settings, lookup, repeat, name)
            values.update(spec=checked.spec.model_dump(mode="json"),
                          model_summary=checked.model_report(),
                          total_steps=checked.estimated_steps,
                          max_attempts=checked.spec.max_attempts or settings.max_attempts)
        except SpecError as refused:
            error = str(refused)
        job = Job(**job_repo.new_job_values(**values), sweep_id=sweep.id, trial_number=number,
                  trial_repeat=repeat, trial_params=params)
        if error is not None:
            job.state, job.error, job.finished_at = "failed", error, func.now()
        session.add(job)
        jobs.append(job)
    session.flush()
    for job in jobs:
        session.refresh(job)
    return jobs


def advance_sweep_of(db: Database, job_id: uuid.UUID, settings: Settings,
                     publish: Publish) -> None:
    """After a job ended: advance its sweep, if it is a trial. Never raises: the reaper's
    next pass advances the sweep if this fails."""
    try:
        began = time.monotonic()
        with db.read() as session:
            sweep_id = session.scalar(select(Job.sweep_id).where(Job.id == job_id))
        if sweep_id is not None:
            advance(db, sweep_id, settings, publish)
            log.info("sweep %s advanced in %.3f s after trial job %s ended", sweep_id,
                     time.monotonic() - began, job_id)
    except Exception:
        log.exception("advancing the sweep of job %s failed; the reaper will", job_id)


_warming = threading.Lock()
_warmed: list[bool] = []


def warm_up_in_background(db: Database, job_id: uuid.UUID, settings: Settings) -> None:
    """When a worker starts a trial, get what `advance` needs on its first call ready in a
    thread, while the trial trains: the job validation's imports (torch, the layer catalogue)
    and its first network built for shapes, seconds on 2 cores that the next trial would
    otherwise wait for (docs/benchmarks.md, "Small trials"). Once per process, and only in a
    process that runs trials."""
    if _warmed or not _warming.acquire(blocking=False):
        return

    def warm() -> None:
        try:
            with db.read() as session:
                spec = session.scalar(select(Sweep.spec).join(Job, Job.sweep_id == Sweep.id)
                                      .where(Job.id == job_id))
            if spec is None:
                return
            _warmed.append(True)
            from core.sweeps import check

            sweep = SweepSpec.model_validate(spec)
            check.check_trial(sweep, sweep.base.model_dump(mode="json"), {}, settings, None)
        except Exception as exc:  # the first advance pays for it instead
            log.info("warming the sweep driver up failed: %s", exc)
        finally:
            _warming.release()

    threading.Thread(target=warm, name="sweep-warm-up", daemon=True).start()



def advance_active(db: Database, settings: Settings, publish: Publish) -> int:
    """Advance every queued or running sweep (the reaper's pass). Returns how many."""
    with db.read() as session:
        ids = list(session.scalars(select(Sweep.id).where(Sweep.state.in_(("queued",
                                                                           "running")))))
    for sweep_id in ids:
        try:
            advance(db, sweep_id, settings, publish)
        except Exception:
            log.exception("advancing sweep %s failed", sweep_id)
    return len(ids)
