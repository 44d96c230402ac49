"""GET /v1/jobs/{id}/events over real HTTP: a real worker trains while the client reads the
stream, disconnects, reconnects with Last-Event-ID and reads to the end; every metric point
must arrive exactly once. Jobs written straight into the database pin down the horizon rule,
the keep-alive ping and that a waiting stream holds no database transaction."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.orm import Session

from core.db import make_engine
from core.progress import Progress
from core.repo import jobs as job_repo
from core.repo import metrics as metric_repo
from tests.conftest import load_example, wait_for_state


@dataclass
class Event:
    kind: str  # "ping" for a comment line
    id: int | None
    data: Any


def events(response: httpx.Response) -> Iterator[Event]:
    """A server-sent-events parser, as much of the format as the API uses."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield Event("ping", None, line)
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif fields:
            yield Event(fields["event"], int(fields["id"]), json.loads(fields["data"]))
            fields = {}


def points_of(event: Event) -> list[tuple[str, int, float, int]]:
    return [(name, step, value, epoch)
            for name, series in event.data["series"].items()
            for step, value, epoch in zip(series["step"], series["value"], series["epoch"],
                                          strict=True)]


@pytest.fixture
def engine(settings):
    engine = make_engine(settings)
    yield engine
    engine.dispose()


def test_every_point_arrives_once_across_a_reconnect(client, worker):
    spec = load_example("digits-mlp")
    # Small batches and a loss point every step: long enough (seconds) to disconnect in
    # the middle, with many flushes.
    spec["training"] |= {"epochs": 20, "batch_size": 16, "log_every_steps": 1}
    created = client.post("/v1/jobs", json=spec)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    url = f"/v1/jobs/{job_id}/events"

    first: list[Event] = []
    with client.stream("GET", url, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in events(response):
            first.append(event)
            if sum(e.kind == "metrics" for e in first) >= 2:
                break  # leaves the block: the connection is closed mid-training
    last_id = max(e.id for e in first if e.id is not None)
    time.sleep(1.5)  # points keep coming while nobody listens

    second: list[Event] = []
    with client.stream("GET", url, headers={"Last-Event-ID": str(last_id)},
                       timeout=120) as response:
        for event in events(response):
            second.append(event)
            if event.kind == "end":
                break
    assert second[-1].kind == "end" and second[-1].data == {"state": "succeeded"}

    states = [e.data["state"] for e in first + second if e.kind == "state"]
    assert first[0].kind == "state" and first[0].data["state"] in ("queued", "running")
    order = ["queued", "running", "succeeded"]
    assert states == sorted(states, key=order.index) and states[-1] == "succeeded"
    assert "running" in states
    running_at_disconnect = [e.data["state"] for e in first if e.kind == "state"][-1]
    assert running_at_disconnect in ("queued", "running"), "the job ended before the disconnect"

    ids = [e.id for e in first + second if e.id is not None]
    assert ids == sorted(ids), "event ids went back"
    assert second[0].id == last_id

    received = [p for e in first + second if e.kind == "metrics" for p in points_of(e)]
    duplicates = [p for p, n in Counter((name, step) for name, step, *_ in received).items()
                  if n > 1]
    assert not duplicates
    stored = client.get(f"/v1/jobs/{job_id}/metrics", params={"max_points": 100_000}).json()
    expected = {(name, step, value, epoch)
                for name, series in stored["series"].items()
                for step, value, epoch in zip(series["step"], series["value"], series["epoch"],
                                              strict=True)}
    assert not any(s.get("downsampled") for s in stored["series"].values())
    assert set(received) == expected
    after = [p for e in second if e.kind == "metrics" for p in points_of(e)]
    assert after and min(step for _, step, *_ in after) > last_id, \
        "nothing was left to read after the reconnect"
    assert max(step for _, step, *_ in received) == second[-1].id

    job = wait_for_state(client, job_id, {"succeeded"})
    progress = [e.data for e in second if e.kind == "progress"]
    assert progress[-1] == job["progress"]
    assert progress[-1]["step"] == progress[-1]["total_steps"]


def _claimed_job(engine) -> tuple[uuid.UUID, int]:
    """A running job that no worker trains: created without publishing, claimed here."""
    with Session(engine) as session, session.begin():
        job = job_repo.create_job(session, name="events-probe", spec=load_example("digits-mlp"),
                                  max_attempts=1, model_summary={}, total_steps=30)
        job_id = job.id
    with Session(engine) as session, session.begin():
        attempt = job_repo.claim_job(session, job_id, "test", 600)
    return job_id, attempt


def _flush(engine, job_id: uuid.UUID, attempt: int, points: list[tuple[str, int]],
           step: int) -> None:
    """What the worker's MetricSink does: points and progress in one transaction."""
    now = datetime.now(UTC)
    rows = [metric_repo.Point(name=name, step=s, value=s / 10, epoch=1, wall_time=now)
            for name, s in points]
    with engine.begin() as conn:
        keys = metric_repo.metric_key_ids(conn, sorted({p.name for p in rows}))
        metric_repo.write_points(conn, job_id, attempt, rows, keys)
        job_repo.record_progress(Session(bind=conn), job_id, attempt,
                                 Progress(epoch=1, epochs=3, step=step, total_steps=30))


def _next(stream: Iterator[Event], kind: str, timeout: float = 10) -> Event:
    deadline = time.monotonic() + timeout
    for event in stream:
        if event.kind == kind:
            return event
        assert time.monotonic() < deadline, f"no {kind} event in {timeout}s"
    raise AssertionError(f"the stream ended before a {kind} event")


def test_points_at_the_running_step_wait_until_it_is_complete(client, engine):
    job_id, attempt = _claimed_job(engine)
    _flush(engine, job_id, attempt, [("loss_step", s) for s in range(1, 11)], step=10)
    url = f"/v1/jobs/{job_id}/events"
    with client.stream("GET", url, params={"ping_s": 0.2}, timeout=30) as response:
        stream = events(response)
        state = _next(stream, "state")
        assert state.id == -1
        assert state.data == {"state": "running", "attempt": attempt, "error": None,
                              "finished_at": None}
        first = _next(stream, "metrics")
        # Step 10 is the job's progress step: its epoch metrics may still be on their way.
        assert first.id == 9
        assert first.data["series"]["loss_step"]["step"] == list(range(1, 10))
        assert _next(stream, "progress").data["step"] == 10

        # The epoch metric at step 10 arrives in a later flush, as it does from a worker.
        _flush(engine, job_id, attempt, [("val_loss", 10), ("loss_step", 11)], step=11)
        second = _next(stream, "metrics")
        assert second.id == 10
        assert sorted(points_of(second)) == [("loss_step", 10, 1.0, 1), ("val_loss", 10, 1.0, 1)]

        with Session(engine) as session, session.begin():
            job_repo.finish_job(session, job_id, attempt, "cancelled")
        ended = _next(stream, "state")
        assert ended.data["state"] == "cancelled" and ended.data["finished_at"]
        last = _next(stream, "metrics")
        assert points_of(last) == [("loss_step", 11, 1.1, 1)] and last.id == 11
        end = _next(stream, "end")
        assert end.data == {"state": "cancelled"} and end.id == 11
        assert list(stream) == []  # the server closed the stream

    # Reconnecting to an ended job: the points after the given id, then the end.
    with client.stream("GET", url, params={"last_event_id": 9}, timeout=30) as response:
        replay = list(events(response))
    assert [e.kind for e in replay] == ["state", "metrics", "progress", "end"]
    assert sorted(points_of(replay[1])) == [("loss_step", 10, 1.0, 1), ("loss_step", 11, 1.1, 1),
                                            ("val_loss", 10, 1.0, 1)]
    # The header wins over the query parameter, as it does for a reconnecting EventSource.
    with client.stream("GET", url, params={"last_event_id": 0},
                       headers={"Last-Event-ID": "11"}, timeout=30) as response:
        assert [e.kind for e in events(response)] == ["state", "progress", "end"]


def test_a_quiet_stream_pings_and_holds_no_transaction(client, engine, settings):
    job_id, attempt = _claimed_job(engine)
    with client.stream("GET", f"/v1/jobs/{job_id}/events", params={"ping_s": 0.3},
                       timeout=30) as response:
        stream = events(response)
        pings = 0
        started = time.monotonic()
        for event in stream:
            pings += event.kind == "ping"
            if pings == 3:
                break
        assert time.monotonic() - started < 10
        # Between polls the stream's database connection is back in the pool: nothing sits
        # in an open transaction on the API's behalf.
        url = settings.database_url.replace("+psycopg", "")
        with psycopg.connect(url, autocommit=True) as conn:
            stuck = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%' AND state_change < now() - interval '1 s'"
            ).fetchone()[0]
        assert stuck == 0
    with Session(engine) as session, session.begin():
        job_repo.finish_job(session, job_id, attempt, "cancelled")


def test_unknown_job_is_404(client):
    missing = uuid.uuid4()
    response = client.get(f"/v1/jobs/{missing}/events")
    assert response.status_code == 404
    assert response.json() == {"detail": f"no job with id {missing}"}
    assert client.get("/v1/jobs/not-a-uuid/events").status_code == 422
    assert client.get(f"/v1/jobs/{missing}/events",
                      headers={"Last-Event-ID": "soon"}).status_code == 422
