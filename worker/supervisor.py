"""Claim a job and supervise its training child: lease heartbeat, cancel, exit code -> state."""

from __future__ import annotations

import logging
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
from psycopg.errors import LockNotAvailable
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from core.attempt_logs import attempt_log_path
from core.db import Database, retry_database
from core.queue import Publisher
from core.repo import jobs as job_repo
from core.settings import Settings
from core.sweeps.driver import advance_sweep_of, warm_up_in_background
from worker.checkpoint_cleanup import tidy_ended_job
from worker.log_setup import note_attempt
from worker.outcome import (
    Cancel,
    Cancelled,
    Decision,
    Exited,
    Fail,
    JobFacts,
    Killed,
    LeaseLost,
    Nothing,
    Outcome,
    Preempted,
    Prune,
    Requeue,
    Succeed,
    decide,
)
from worker.spawn import WARM, Attempt, start_attempt
from worker.stall import StallWatch

log = logging.getLogger(__name__)

STOP_GRACE_S = 1.0
LOCK_WAIT_MS = 1000  # the longest the supervisor waits for the job row's lock
CANCEL_GRACE_S = 10.0  # to flush the last points: a cancelled child writes no checkpoint


def stop_child(proc: Attempt) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_cancelled_child(proc: Attempt) -> None:
    """Stop the child of a cancelled job. SIGUSR1, not SIGTERM: SIGTERM asks for a checkpoint
    (a preemption), and the SIGKILL that follows a slow one used to land mid-write and leave
    its file behind. On SIGUSR1 the child flushes its points and progress and exits without
    one (worker/child.py StopFlag); the kill is only for a child that does not."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGUSR1)
    try:
        proc.wait(CANCEL_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def supervise_job(
    db: Database, job_id: uuid.UUID, settings: Settings, owner: str, publisher: Publisher,
    shutting_down: Callable[[], bool] = lambda: False,
) -> str:
    """Run one attempt of a job to its end. Returns what happened (for logs and tests).

    When `shutting_down` turns true (the worker got SIGTERM), the child is asked to
    checkpoint and stop, and the job goes back to the queue without spending an attempt.
    """
    with db.transaction() as session:
        attempt = job_repo.claim_job(session, job_id, owner, settings.lease_ttl_s)
    if attempt is None:
        log.info("job %s is not queued (duplicate message or already taken)", job_id)
        return "duplicate"
    note_attempt(attempt)  # on this job's log lines from here on

    log_path = attempt_log_path(settings.log_dir, job_id, attempt)
    proc = start_attempt(job_id, attempt, log_path)
    warm_up_in_background(db, job_id, settings)  # a trial's end advances its sweep
    CURRENT_JOB.set(job_id)
    log.info("job %s attempt %d: training child pid %d", job_id, attempt, proc.pid)
    try:
        outcome = _watch(db, proc, job_id, attempt, settings, shutting_down)
    finally:
        CURRENT_JOB.clear()
        if proc.poll() is not None:  # the next job's child, once this one's attempt ended
            WARM.after(proc, settings, stopping=shutting_down())
    return _finish(db, job_id, attempt, outcome, log_path, publisher, settings)


class CurrentJob:
    """The job this worker process is supervising, for its heartbeat row."""

    def __init__(self) -> None:
        self.job_id: uuid.UUID | None = None

    def set(self, job_id: uuid.UUID) -> None:
        self.job_id = job_id

    def clear(self) -> None:
        self.job_id = None


CURRENT_JOB = CurrentJob()


def _watch(db: Database, proc: Attempt, job_id: uuid.UUID, attempt: int,
           settings: Settings, shutting_down: Callable[[], bool]) -> Outcome:
    """Wait for the child while renewing the lease and watching for cancel and shutdown."""
    renew_every = settings.lease_ttl_s / 3
    next_renew = time.monotonic() + renew_every
    stop_deadline: float | None = None
    stall = StallWatch(settings.stall_timeout_s) if settings.stall_timeout_s else None
    while True:
        try:
            proc.wait(settings.cancel_poll_s)
            # Ended while this worker is stopping: a Ctrl-C reaches the whole process group,
            # and one that lands while the training process is still starting kills it by the
            # signal, or, inside the interpreter's own start-up (importing `site`), ends it
            # with 1 ("Fatal Python error: init_import_site"). A stop all the same.
            stopped = (stop_deadline is not None or proc.returncode == -signal.SIGINT
                       or shutting_down())
            return Preempted(proc.returncode) if stopped else Exited(proc.returncode)
        except subprocess.TimeoutExpired:
            pass
        if stop_deadline is None and shutting_down():
            log.info("job %s: worker shutting down; asking the child to checkpoint", job_id)
            proc.send_signal(signal.SIGTERM)
            stop_deadline = time.monotonic() + settings.preempt_grace_s
        too_big = _over_memory_limit(proc, settings.child_memory_limit_mb)
        if too_big:
            log.warning("job %s: %s; killing the child", job_id, too_big)
            proc.kill()
            proc.wait()
            return Killed(too_big, proc.returncode)
        stalled = _stalled(proc, stall) if stop_deadline is None else None
        if stalled is not None:
            why = _stall_reason(db, job_id, stalled)
            log.warning("job %s: %s; killing the child", job_id, why)
            proc.kill()
            proc.wait()
            return Killed(why, proc.returncode)
        if stop_deadline is not None and time.monotonic() > stop_deadline:
            log.warning("job %s: no checkpoint within %.0fs; killing the child", job_id,
                        settings.preempt_grace_s)
            proc.kill()
            proc.wait()
            return Preempted(proc.returncode)
        asked = time.monotonic()
        try:
            with db.transaction() as session:
                # The training process updates the job's row with each metric flush: stopped
                # (SIGSTOP) inside that transaction, it holds the row's lock for as long as it
                # is stopped, and an UPDATE here would wait for it forever, so the stall
                # watchdog below would never run again.
                session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT_MS}ms'"))
                if time.monotonic() >= next_renew:
                    cancel = job_repo.renew_lease(session, job_id, attempt, settings.lease_ttl_s)
                    next_renew = time.monotonic() + renew_every
                else:
                    cancel = job_repo.cancel_flag(session, job_id, attempt)
        except SQLAlchemyError as exc:
            if isinstance(exc, OperationalError) and isinstance(exc.orig, LockNotAvailable):
                log.info("job %s: its row is locked by the training process; checked again "
                         "in a moment", job_id)
                continue
            log.warning("job %s: database unreachable while supervising: %s", job_id,
                        str(exc).splitlines()[0])
            if stall is not None:  # the child may be waiting for it too, by design
                stall.restart()
            continue
        if stall is not None and time.monotonic() - asked > settings.db_answer_timeout_s:
            stall.restart()  # a database that hung for a while: the child waited for it too
        if cancel is None:
            log.warning("job %s attempt %d lost its lease; stopping the child", job_id, attempt)
            stop_child(proc)
            return LeaseLost()
        if cancel:
            stop_cancelled_child(proc)
            return Cancelled()


def _over_memory_limit(proc: Attempt, limit_mb: int) -> str | None:
    """Why the child must die for its memory use, or None."""
    if not limit_mb:
        return None
    try:
        rss_mb = psutil.Process(proc.pid).memory_info().rss / 2**20
    except psutil.Error:  # it has just exited
        return None
    if rss_mb <= limit_mb:
        return None
    return (f"the training process needed more than {limit_mb / 1024:.1f} GB of memory: it "
            f"used {rss_mb:,.0f} MB, over the {limit_mb:,} MB limit "
            "(TRAINDOCK_MAX_CHILD_MEMORY_MB); use a smaller network or batch, or raise the limit")


def _stalled(proc: Attempt, stall: StallWatch | None) -> float | None:
    """Seconds the child has made no progress, once that reaches the stall timeout."""
    if stall is None:
        return None
    try:
        times = psutil.Process(proc.pid).cpu_times()
    except psutil.Error:  # it has just exited
        return None
    return stall.observe(time.monotonic(), times.user + times.system)


def _stall_reason(db: Database, job_id: uuid.UUID, seconds: float) -> str:
    try:
        with db.transaction() as session:
            job = job_repo.get_job(session, job_id)
            at = f" at step {job.progress.get('step', 0)}" if job else ""
    except SQLAlchemyError:
        at = ""
    return (f"no progress for {seconds:.0f} s{at}: the training process used no CPU time "
            "(stopped, deadlocked, or waiting on a disk or device that does not answer); "
            "killed by the stall watchdog (TRAINDOCK_STALL_TIMEOUT_S)")


def _record_end(db: Database, write: Callable[[Session], object], settings: Settings
                ) -> None:
    def attempt_write() -> None:
        with db.transaction() as session:
            write(session)

    retry_database(attempt_write, "recording the end of an attempt", settings.db_retry_s)


def _finish(db: Database, job_id: uuid.UUID, attempt: int, outcome: Outcome, log_path: Path,
            publisher: Publisher, settings: Settings) -> str:
    """Decide the job's next state from how the attempt ended (worker/outcome.py), write it,
    publish or tidy as it says. Returns the decision's label (for logs and tests)."""
    decided: list[Decision] = []

    def decide_and_write(session: Session) -> None:
        # A cancel or a lost lease needs no row (and a lost lease must not wait on the database)
        needs_row = not isinstance(outcome, Cancelled | LeaseLost)
        job = job_repo.get_job(session, job_id) if needs_row else None
        decision = decide(outcome, attempt, JobFacts.of(job) if job else None,
                          settings.republish_after_s, lambda: _log_tail(log_path))
        _write(session, job_id, attempt, decision)
        decided[:] = [decision]

    _record_end(db, decide_and_write, settings)
    decision = decided[0]
    if isinstance(decision, Requeue) and decision.publish_now and publisher.publish(str(job_id)):
        with db.transaction() as session:
            job_repo.mark_published(session, [job_id])
    if isinstance(decision, Succeed | Fail | Cancel | Prune):
        tidy_ended_job(db, job_id, settings)
        advance_sweep_of(db, job_id, settings, publisher.publish)  # a trial: its next ones
    log.info("job %s attempt %d: %s (%s)", job_id, attempt, decision.label, outcome)
    return decision.label


def _write(session: Session, job_id: uuid.UUID, attempt: int, decision: Decision) -> None:
    match decision:
        case Succeed():
            job_repo.finish_job(session, job_id, attempt, "succeeded")
        case Fail(reason):
            job_repo.finish_job(session, job_id, attempt, "failed", reason)
        case Cancel():
            job_repo.finish_job(session, job_id, attempt, "cancelled")
        case Prune(reason):
            job_repo.finish_job(session, job_id, attempt, "pruned", reason)
        case Requeue(note, preempted, publish_now):
            job_repo.requeue_job(session, job_id, attempt, preempted=preempted, note=note)
            if not publish_now:  # as if just published: the reaper publishes it later
                job_repo.mark_published(session, [job_id])
        case Nothing():
            pass
