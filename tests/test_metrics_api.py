"""Metric writes through the COPY path and reads over HTTP, paged without gaps or repeats."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from core.db import make_engine
from core.repo import jobs as job_repo
from core.repo import metrics as metric_repo
from tests.conftest import load_example


@pytest.fixture
def engine(settings):
    engine = make_engine(settings)
    yield engine
    engine.dispose()


def _running_job(engine) -> tuple:
    with Session(engine) as session, session.begin():
        job = job_repo.create_job(session, name="metrics-probe", spec=load_example("digits-mlp"),
                                  max_attempts=1, model_summary={}, total_steps=0)
        job_id = job.id
    with Session(engine) as session, session.begin():
        # Created without publishing, and claimed here, so that no worker trains it.
        attempt = job_repo.claim_job(session, job_id, "test", 600)
    return job_id, attempt


def _write(engine, job_id, attempt, points) -> int:
    with engine.begin() as conn:
        keys = metric_repo.metric_key_ids(conn, sorted({p.name for p in points}))
        return metric_repo.write_points(conn, job_id, attempt, points, keys)


def test_pages_return_every_point_exactly_once(client, engine):
    job_id, attempt = _running_job(engine)
    now = datetime.now(UTC)
    points = [metric_repo.Point("dense", s, float(s), 1, now) for s in range(1, 101)]
    points += [metric_repo.Point("sparse", s, -float(s), 1, now) for s in range(10, 101, 10)]
    assert _write(engine, job_id, attempt, points) == 110

    seen: dict[str, list[int]] = {"dense": [], "sparse": []}
    since, pages = -1, 0
    while since is not None:
        body = client.get(f"/v1/jobs/{job_id}/metrics",
                          params={"since_step": since, "max_points": 7}).json()
        for name, series in body["series"].items():
            seen[name].extend(series["step"])
        since, pages = body["next_since_step"], pages + 1
        assert pages < 50
    assert seen["dense"] == list(range(1, 101))
    assert seen["sparse"] == list(range(10, 101, 10))
    client.post(f"/v1/jobs/{job_id}/cancel")


def test_a_stale_attempt_writes_nothing(engine, client):
    job_id, attempt = _running_job(engine)
    now = datetime.now(UTC)
    written = _write(engine, job_id, attempt + 1, [metric_repo.Point("x", 1, 1.0, 1, now)])
    assert written == 0
    assert client.get(f"/v1/jobs/{job_id}/metrics").json()["series"] == {}
    client.post(f"/v1/jobs/{job_id}/cancel")
