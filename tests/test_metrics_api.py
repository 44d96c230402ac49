"""Metric writes through the COPY path, read back over HTTP: raw or downsampled series, and
the CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

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


def _running_job(engine, name: str = "metrics-probe") -> tuple:
    with Session(engine) as session, session.begin():
        job = job_repo.create_job(session, name=name, spec=load_example("digits-mlp"),
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


@pytest.fixture
def two_series(client, engine):
    """`dense`: steps 1..100, value = step, except a dip to -50 at step 37; `sparse`: every
    tenth step, value = -step. Cancelled at teardown."""
    job_id, attempt = _running_job(engine)
    start = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    points = [metric_repo.Point(name="dense", step=s, value=-50.0 if s == 37 else float(s),
                                epoch=1 + s // 50, wall_time=start + timedelta(seconds=s))
              for s in range(1, 101)]
    points += [metric_repo.Point(name="sparse", step=s, value=-float(s), epoch=1 + s // 50,
                                 wall_time=start)
               for s in range(10, 101, 10)]
    assert _write(engine, job_id, attempt, points) == 110
    yield job_id, points
    client.post(f"/v1/jobs/{job_id}/cancel")


def test_short_series_come_back_as_stored(client, two_series):
    job_id, points = two_series
    body = client.get(f"/v1/jobs/{job_id}/metrics").json()
    dense = [p for p in points if p.name == "dense"]
    assert body == {"series": {
        "dense": {"step": [p.step for p in dense], "value": [p.value for p in dense],
                  "epoch": [p.epoch for p in dense]},
        "sparse": {"step": list(range(10, 101, 10)), "value": [-float(s) for s in
                                                                range(10, 101, 10)],
                   "epoch": [1 + s // 50 for s in range(10, 101, 10)]},
    }}


def test_since_step_and_names_filter(client, two_series):
    job_id, _ = two_series
    body = client.get(f"/v1/jobs/{job_id}/metrics",
                      params={"since_step": 95, "names": "dense, nope"}).json()
    assert body == {"series": {"dense": {"step": [96, 97, 98, 99, 100],
                                         "value": [96.0, 97.0, 98.0, 99.0, 100.0],
                                         "epoch": [2, 2, 2, 2, 3]}}}
    # Exactly max_points points after since_step: still raw.
    body = client.get(f"/v1/jobs/{job_id}/metrics",
                      params={"since_step": 90, "max_points": 10}).json()
    assert body["series"]["dense"]["step"] == list(range(91, 101))
    assert "downsampled" not in body["series"]["dense"]
    assert body["series"]["sparse"] == {"step": [100], "value": [-100.0], "epoch": [3]}
    assert client.get(f"/v1/jobs/{job_id}/metrics",
                      params={"since_step": 100}).json() == {"series": {}}


def test_long_series_are_downsampled_keeping_extremes(client, two_series):
    job_id, _ = two_series
    body = client.get(f"/v1/jobs/{job_id}/metrics", params={"max_points": 7}).json()
    dense = body["series"]["dense"]
    assert dense["downsampled"] is True
    n = len(dense["step"])
    assert 1 <= n <= 7
    assert all(len(dense[key]) == n for key in ("value", "epoch", "min", "max", "mean"))
    # Steps 1..100 in buckets 15 steps wide (the narrowest that needs at most 7), aligned to
    # multiples of 15 (0-14, 15-29, ...), each answered by its last step.
    assert dense["step"] == [14, 29, 44, 59, 74, 89, 100]
    assert dense["value"] == [float(s) for s in dense["step"]]
    assert dense["epoch"] == [1 + s // 50 for s in dense["step"]]
    assert min(dense["min"]) == -50.0 and max(dense["max"]) == 100.0
    assert dense["min"][2] == -50.0  # the dip, in the bucket 30..44
    assert dense["mean"][0] == pytest.approx(7.5)  # the mean of 1..14
    for low, mean, high in zip(dense["min"], dense["mean"], dense["max"], strict=True):
        assert low <= mean <= high
    # Ten points with max_points 7: downsampled into the same buckets (10..100 needs 7).
    sparse = body["series"]["sparse"]
    assert sparse["downsampled"] is True and sparse["step"][-1] == 100
    assert len(sparse["step"]) <= 7 and min(sparse["min"]) == -100.0
    assert max(sparse["max"]) == -10.0


def test_max_points_bounds_and_unknown_job(client, two_series):
    job_id, _ = two_series
    for bad in (0, 100_001):
        response = client.get(f"/v1/jobs/{job_id}/metrics", params={"max_points": bad})
        assert response.status_code == 422
        assert response.json()["detail"][0]["field"] == "query.max_points"
    missing = uuid.uuid4()
    assert client.get(f"/v1/jobs/{missing}/metrics").status_code == 404
    assert client.get(f"/v1/jobs/{missing}/metrics.csv").json() == {
        "detail": f"no job with id {missing}"}


def test_csv_holds_every_point_by_name_then_step(client, two_series):
    job_id, points = two_series
    response = client.get(f"/v1/jobs/{job_id}/metrics.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        'attachment; filename="metrics-probe-metrics.csv"')
    lines = response.text.splitlines()
    assert lines[0] == "name,step,epoch,value,wall_time"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    expected = sorted(points, key=lambda p: (p.name, p.step))
    assert [(r["name"], int(r["step"])) for r in rows] == [(p.name, p.step) for p in expected]
    for row, point in zip(rows, expected, strict=True):
        assert float(row["value"]) == point.value  # exact: PostgreSQL's shortest round trip
        assert int(row["epoch"]) == point.epoch
        assert datetime.fromisoformat(row["wall_time"]) == point.wall_time
    assert rows[0]["wall_time"] == "2026-01-02T03:04:06.678901Z"

    only = client.get(f"/v1/jobs/{job_id}/metrics.csv", params={"names": "sparse"}).text
    assert only.splitlines()[1:] == [f"sparse,{s},{1 + s // 50},-{s},2026-01-02T03:04:05.678901Z"
                                     for s in range(10, 101, 10)]


def test_csv_of_a_job_without_points_is_the_header(client, engine):
    job_id, _ = _running_job(engine, name="naïve run")
    response = client.get(f"/v1/jobs/{job_id}/metrics.csv")
    assert response.text == "name,step,epoch,value,wall_time\n"
    # A name that is not plain ASCII travels percent-encoded in filename*.
    assert response.headers["content-disposition"] == (
        "attachment; filename*=utf-8''na%C3%AFve%20run-metrics.csv")
    client.post(f"/v1/jobs/{job_id}/cancel")


def test_a_stale_attempt_writes_nothing(engine, client):
    job_id, attempt = _running_job(engine)
    now = datetime.now(UTC)
    late = metric_repo.Point(name="x", step=1, value=1.0, epoch=1, wall_time=now)
    written = _write(engine, job_id, attempt + 1, [late])
    assert written == 0
    assert client.get(f"/v1/jobs/{job_id}/metrics").json()["series"] == {}
    client.post(f"/v1/jobs/{job_id}/cancel")
