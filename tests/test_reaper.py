"""The reaper against a real PostgreSQL and a real Redis: expired leases, the attempt
budget, lost messages, and one pass at a time."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db import Database, make_engine
from core.queue import Publisher, pending_job_ids
from core.reaper import REAPER_LOCK_KEY, reap
from core.repo import jobs as job_repo
from core.settings import Settings
from tests.conftest import load_example


@pytest.fixture
def reaper_settings(settings: Settings, fresh_database: str) -> Settings:
    # A database and a Redis database of their own: no session-wide worker reaps or
    # consumes what these tests set up.
    base = settings.broker_url.rsplit("/", 1)[0]
    isolated = settings.model_copy(update={"broker_url": f"{base}/6", "republish_after_s": 0.0,
                                           "database_url": fresh_database})
    redis.Redis.from_url(isolated.broker_url).flushdb()
    yield isolated
    redis.Redis.from_url(isolated.broker_url).flushdb()


@pytest.fixture
def db(reaper_settings: Settings):
    database = Database(make_engine(reaper_settings))
    yield database
    database.engine.dispose()


@pytest.fixture
def sessions(db: Database):
    return db.read


def _job(sessions, max_attempts: int = 2) -> uuid.UUID:
    with sessions() as session, session.begin():
        return job_repo.create_job(session, name="reaper-probe", spec=load_example("digits-mlp"),
                                   max_attempts=max_attempts, model_summary={},
                                   total_steps=1).id


def _claim_and_expire(sessions, job_id: uuid.UUID) -> int:
    with sessions() as session, session.begin():
        attempt = job_repo.claim_job(session, job_id, "lost-worker", 0.01)
    time.sleep(0.05)
    return attempt


def _state(sessions, job_id):
    with sessions() as session:
        job = job_repo.get_job(session, job_id)
        return job.state, job.attempt, job.error


def test_an_expired_lease_requeues_then_fails_when_attempts_are_spent(db, sessions,
                                                                      reaper_settings):
    publisher = Publisher(reaper_settings)
    job_id = _job(sessions, max_attempts=2)

    assert _claim_and_expire(sessions, job_id) == 1
    report = reap(db, publisher, reaper_settings)
    assert job_id in report.requeued
    state, attempt, error = _state(sessions, job_id)
    assert (state, attempt) == ("queued", 1)
    assert "worker lost-worker lost" in error
    assert str(job_id) in pending_job_ids(reaper_settings)  # published again

    assert _claim_and_expire(sessions, job_id) == 2
    assert _state(sessions, job_id)[2] is None  # the new attempt's claim cleared the note
    report = reap(db, publisher, reaper_settings)
    assert job_id in report.failed
    state, attempt, error = _state(sessions, job_id)
    assert (state, attempt) == ("failed", 2)
    assert error.startswith("worker lost") and "all 2 attempts are spent" in error


def test_preemptions_do_not_spend_attempts(db, sessions, reaper_settings):
    job_id = _job(sessions, max_attempts=1)
    with sessions() as session, session.begin():
        attempt = job_repo.claim_job(session, job_id, "w", 600)
        assert job_repo.requeue_job(session, job_id, attempt, preempted=True, note="shutdown")
    _claim_and_expire(sessions, job_id)  # attempt 2, but only the first one counted
    reap(db, Publisher(reaper_settings), reaper_settings)
    assert _state(sessions, job_id)[0] == "failed"  # 2 - 1 preemption = 1 = max_attempts


def test_a_live_lease_is_left_alone(db, sessions, reaper_settings):
    job_id = _job(sessions)
    with sessions() as session, session.begin():
        job_repo.claim_job(session, job_id, "healthy-worker", 600)
    report = reap(db, Publisher(reaper_settings), reaper_settings)
    assert job_id not in report.requeued + report.failed
    assert _state(sessions, job_id)[0] == "running"
    with sessions() as session, session.begin():
        job_repo.request_cancel(session, job_id)


def test_a_queued_job_whose_message_was_lost_is_published_once(db, sessions, reaper_settings):
    job_id = _job(sessions)  # created without publishing: as if the broker lost it
    publisher = Publisher(reaper_settings)
    first = reap(db, publisher, reaper_settings)
    assert job_id in first.republished
    second = reap(db, publisher, reaper_settings)
    assert job_id not in second.republished  # its message is in the broker now
    client = redis.Redis.from_url(reaper_settings.broker_url)
    assert client.llen("traindock") == 1
    with sessions() as session, session.begin():
        job_repo.request_cancel(session, job_id)


def test_one_reaper_at_a_time(db, sessions, reaper_settings):
    job_id = _job(sessions)
    _claim_and_expire(sessions, job_id)
    with sessions() as holder, holder.begin():
        assert holder.scalar(select(func.pg_try_advisory_xact_lock(REAPER_LOCK_KEY)))
        report = reap(db, Publisher(reaper_settings), reaper_settings)
        assert report.skipped and not report.requeued
    report = reap(db, Publisher(reaper_settings), reaper_settings)
    assert job_id in report.requeued
    with Session(bind=db.engine) as session, session.begin():
        job_repo.request_cancel(session, job_id)


def test_a_lost_message_behind_a_backlog_of_live_ones_is_published(db, sessions, reaper_settings):
    """Fault G: the reaper read only the 1,000 oldest stale queued jobs. Jobs whose messages
    wait in the broker never leave that window, so a lost message behind them was never
    published again. 1,200 queued jobs with live messages, then one without."""
    from sqlalchemy import insert

    from core.tables import Job

    spec = load_example("digits-mlp")
    rows = [job_repo.new_job_values(name="backlog", spec=spec, max_attempts=2, model_summary={},
                                    total_steps=1) for _ in range(1200)]
    with sessions() as session, session.begin():
        session.execute(insert(Job), rows)
    publisher = Publisher(reaper_settings)
    for row in rows:
        assert publisher.publish(str(row["id"]))
    lost = _job(sessions)  # created last, never published: as if the broker lost it

    report = reap(db, publisher, reaper_settings)
    assert report.republished == [lost]
    pending = pending_job_ids(reaper_settings)
    assert str(lost) in pending and len(pending) == 1201  # nothing published twice

    # The live ones were stamped as seen: the next pass publishes nothing again.
    assert reap(db, publisher, reaper_settings).republished == []
    assert redis.Redis.from_url(reaper_settings.broker_url).llen("traindock") == 1201
