"""The reaper: recovers jobs whose worker was lost and jobs whose message the broker lost.

Every worker runs it on a timer (worker/background.py); a PostgreSQL advisory lock makes one
pass at a time across the fleet, so more workers add no extra load. It lives with the workers
rather than the API because it is the workers' leases it checks, and because a fleet with no
worker has nothing to hand a recovered job to anyway.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db import Database
from core.queue import Publisher, pending_job_ids
from core.repo import jobs as job_repo
from core.settings import Settings
from core.sweeps.driver import advance_active

log = logging.getLogger(__name__)

REAPER_LOCK_KEY = 0x74726169  # "trai": one reaper pass at a time, fleet-wide


@dataclass
class ReapReport:
    requeued: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)
    republished: list[uuid.UUID] = field(default_factory=list)
    sweeps: int = 0  # queued or running sweeps advanced
    skipped: bool = False  # another reaper held the lock


def reap(db: Database, publisher: Publisher, settings: Settings) -> ReapReport:
    report = ReapReport()
    with db.transaction() as session:
        if not _take_lock(session):
            report.skipped = True
            return report
        report.requeued, report.failed = job_repo.expire_leases(session)
    for job_id in report.failed:
        log.warning("job %s failed: worker lost and no attempts left", job_id)

    # Publish after the commit, so that a worker's claim sees the job queued.
    published = [j for j in report.requeued if publisher.publish(str(j))]
    with db.transaction() as session:
        job_repo.mark_published(session, published)
        if _take_lock(session):
            report.republished = _republish_lost(session, publisher, settings)
    # Sweeps whose trial ended in a process that died before advancing them, or whose
    # trials were cancelled while queued (no worker saw them end).
    report.sweeps = advance_active(db, settings, publisher.publish)
    if report.requeued or report.failed or report.republished:
        log.info("reaper: %d requeued, %d failed, %d re-published", len(report.requeued),
                 len(report.failed), len(report.republished))
    return report


def _take_lock(session: Session) -> bool:
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(REAPER_LOCK_KEY))))


def _republish_lost(session: Session, publisher: Publisher, settings: Settings
                    ) -> list[uuid.UUID]:
    """Publish every stale queued job that has no message in the broker, page by page, so
    that a lost message is found behind any backlog. A stale job whose message waits in the
    broker is stamped as seen: it leaves the window, and a backlog costs one scan per
    `republish_after_s` rather than one per pass."""
    republished: list[uuid.UUID] = []
    pending: set[str] | None = None
    after = None
    while page := job_repo.unpublished_queued_jobs(session, settings.republish_after_s,
                                                   after=after):
        if pending is None:
            pending = pending_job_ids(settings)
            if pending is None:  # the broker cannot be read: decide nothing
                break
        after = page[-1][1]
        seen = [job_id for job_id, _ in page if str(job_id) in pending]
        lost = [job_id for job_id, _ in page if str(job_id) not in pending]
        published = [job_id for job_id in lost if publisher.publish(str(job_id))]
        job_repo.mark_published(session, seen + published)
        republished += published
    return republished
