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
from sqlalchemy.orm import Session, sessionmaker

from core.queue import Publisher, pending_job_ids
from core.repo import jobs as job_repo
from core.settings import Settings

log = logging.getLogger(__name__)

REAPER_LOCK_KEY = 0x74726169  # "trai": one reaper pass at a time, fleet-wide


@dataclass
class ReapReport:
    requeued: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)
    republished: list[uuid.UUID] = field(default_factory=list)
    skipped: bool = False  # another reaper held the lock


def reap(sessions: sessionmaker[Session], publisher: Publisher, settings: Settings
         ) -> ReapReport:
    report = ReapReport()
    with sessions() as session, session.begin():
        if not session.scalar(select(func.pg_try_advisory_xact_lock(REAPER_LOCK_KEY))):
            report.skipped = True
            return report
        report.requeued, report.failed = job_repo.expire_leases(session)
        stale = job_repo.unpublished_queued_jobs(session, settings.republish_after_s)
    for job_id in report.failed:
        log.warning("job %s failed: worker lost and no attempts left", job_id)

    # Publish after the commit, so that a worker's claim sees the job queued.
    pending = pending_job_ids(settings) if stale else set()
    candidates = list(report.requeued)
    if pending is not None:
        candidates += [j for j in stale if str(j) not in pending and j not in report.requeued]
    published = [j for j in candidates if publisher.publish(str(j))]
    report.republished = [j for j in published if j not in report.requeued]
    if published:
        with sessions() as session, session.begin():
            job_repo.mark_published(session, published)
    if report.requeued or report.failed or report.republished:
        log.info("reaper: %d requeued, %d failed, %d re-published", len(report.requeued),
                 len(report.failed), len(report.republished))
    return report
