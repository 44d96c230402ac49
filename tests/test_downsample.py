"""Downsampling in SQL, on a series of a million points (a noisy sine with spikes) written
straight into PostgreSQL with its rollups rebuilt after: checked against numpy on the same
data, and against a plain GROUP BY step / width over the points (tests/test_rollups.py).
Query times are printed (run with -s), not asserted."""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from core.db import make_engine
from core.repo import jobs as job_repo
from core.repo import metrics as metric_repo
from core.settings import Settings
from tests.conftest import create_migrated_database, drop_database, load_example
from tests.test_rollups import check_against_reference, check_rollups, expected_width

N = 1_000_000
SPIKES = {123_457: 40.0, 500_001: -35.0, 876_543: 55.0}
STEPS_PER_EPOCH = 10_000
SPARSE = 50_000  # random steps, fewer once repeats are dropped
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Series:
    engine: Engine
    job_id: uuid.UUID
    steps: np.ndarray
    values: np.ndarray
    epochs: np.ndarray


def noisy_sine(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    steps = np.arange(1, n + 1, dtype=np.int64)
    values = np.sin(steps / 20_000) + np.random.default_rng(0).normal(0, 0.1, n)
    for step, value in SPIKES.items():
        values[step - 1] = value
    return steps, values, (steps - 1) // STEPS_PER_EPOCH + 1


def copy_series(engine: Engine, job_id: uuid.UUID,
                series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """COPY in PostgreSQL's binary format, built by numpy in one piece: a million rows go in
    within seconds, where formatting them as text in Python takes longer than the tests. The
    rollups are rebuilt in the same transaction: a point written past write_points has none."""
    row = np.dtype([("fields", ">i2"),
                    ("job_len", ">i4"), ("job", "V16"), ("key_len", ">i4"), ("key", ">i2"),
                    ("step_len", ">i4"), ("step", ">i8"), ("value_len", ">i4"), ("value", ">f8"),
                    ("epoch_len", ">i4"), ("epoch", ">i4"), ("wall_len", ">i4"), ("wall", ">i8")])
    now_us = (datetime.now(UTC) - PG_EPOCH) // timedelta(microseconds=1)
    with engine.begin() as conn:
        key_ids = metric_repo.metric_key_ids(conn, list(series))
        # Skips the per-row foreign-key checks, most of the time of a million-row COPY and of
        # the rollup rebuild; the job and the keys were made just above. (Needs a superuser,
        # as the tests have.)
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        cur = conn.connection.driver_connection.cursor()
        for name, (steps, values, epochs) in series.items():
            rows = np.empty(len(steps), dtype=row)
            rows["fields"] = 6
            for field, size in (("job", 16), ("key", 2), ("step", 8), ("value", 8),
                                ("epoch", 4), ("wall", 8)):
                rows[f"{field}_len"] = size
            rows["job"], rows["key"] = np.void(job_id.bytes), key_ids[name]
            rows["step"], rows["value"], rows["epoch"] = steps, values, epochs
            rows["wall"] = now_us + steps  # a microsecond apart
            with cur.copy("COPY metric (job_id, key_id, step, value, epoch, wall_time) "
                          "FROM STDIN (FORMAT binary)") as copy:
                copy.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
                copy.write(rows.tobytes())
                copy.write(struct.pack(">h", -1))
        started = time.perf_counter()
        metric_repo.rebuild_rollups(conn, job_id)
        print(f"rollups rebuilt in {time.perf_counter() - started:.1f} s")


def claimed_job(engine: Engine) -> uuid.UUID:
    """A running job (so points may be written) that no worker ever sees."""
    with Session(engine) as session, session.begin():
        job_id = job_repo.create_job(session, name="a-million", spec=load_example("digits-mlp"),
                                     max_attempts=1, model_summary={}, total_steps=N).id
    with Session(engine) as session, session.begin():
        assert job_repo.claim_job(session, job_id, "test", 600) is not None
    return job_id


def write_million(engine: Engine) -> Series:
    job_id = claimed_job(engine)
    steps, values, epochs = noisy_sine(N)
    sparse = np.unique(np.random.default_rng(2).integers(1, N + 1, SPARSE))
    started = time.perf_counter()
    copy_series(engine, job_id, {
        "big": (steps, values, epochs),
        # A short series beside it: every 10,000th step.
        "val_loss": (steps[9_999::10_000], -values[9_999::10_000], epochs[9_999::10_000]),
        # And one at random steps: blocks with a few points each, or none.
        "sparse": (sparse, values[sparse - 1], epochs[sparse - 1]),
    })
    print(f"\nCOPY of {N:,} points and their rollups: {time.perf_counter() - started:.1f} s")
    return Series(engine, job_id, steps, values, epochs)


@pytest.fixture(scope="module")
def million() -> Iterator[Series]:
    """As `fresh_database` (a database no worker or reaper sees), but shared by the module:
    the data takes seconds to write."""
    name = f"traindock_own_{uuid.uuid4().hex[:8]}"
    url = create_migrated_database(name)
    engine = make_engine(Settings(database_url=url))
    try:
        yield write_million(engine)
    finally:
        engine.dispose()
        drop_database(name)


def timed_read(series: Series, **kwargs) -> tuple[dict, float]:
    with Session(series.engine) as session:
        started = time.perf_counter()
        out = metric_repo.read_series(session, series.job_id, **kwargs)
        return out, time.perf_counter() - started


def check_buckets(big: dict, series: Series, first_step: int, max_points: int) -> None:
    """Each bucket against numpy: a dense series' buckets are the runs of steps between
    consecutive answered steps, so their min, max and mean can be recomputed; and each run
    but the last ends on a multiple of the documented width (less one)."""
    steps = np.array(big["step"])
    assert big["downsampled"] is True
    assert 0 < len(steps) <= max_points
    assert np.all(np.diff(steps) > 0)
    assert steps[-1] == N  # the last bucket ends with the last point
    width = expected_width(first_step, N, max_points)
    assert np.all(steps[:-1] % width == width - 1)
    assert len(steps) == N // width - first_step // width + 1  # a dense series fills them all
    assert big["value"] == series.values[steps - 1].tolist()  # "last" of each bucket
    assert big["epoch"] == series.epochs[steps - 1].tolist()
    starts = np.concatenate([[first_step], steps[:-1] + 1]) - 1
    values = series.values[first_step - 1:]
    offsets = starts - (first_step - 1)
    assert big["min"] == np.minimum.reduceat(values, offsets).tolist()
    assert big["max"] == np.maximum.reduceat(values, offsets).tolist()
    sums = np.add.reduceat(values, offsets)
    counts = np.diff(np.concatenate([offsets, [len(values)]]))
    np.testing.assert_allclose(big["mean"], sums / counts, rtol=1e-9, atol=1e-12)


def test_a_million_points_come_back_as_aligned_buckets_that_keep_the_extremes(million):
    out, elapsed = timed_read(million, names=["big"], since_step=-1, max_points=1000)
    big = out["big"]
    print(f"\ndownsample {N:,} points to {len(big['step'])} buckets: {elapsed * 1000:.0f} ms")
    check_buckets(big, million, first_step=1, max_points=1000)
    assert big["step"][:2] == [1023, 2047]  # 1024 steps wide: 977 buckets, 977 rollup rows
    assert min(big["min"]) == million.values.min() == -35.0
    assert max(big["max"]) == million.values.max() == 55.0
    for spike in SPIKES.values():
        assert spike in big["min"] + big["max"]


@pytest.mark.parametrize(("since", "max_points"), [
    (654_321, 777),  # since_step inside a 128-step block: 14 points, then 128-step blocks
    (654_300, 777),  # ... and two 16-step blocks between
    (600_001, 20),  # 3 * 8192 steps wide: every finer level fills the straddling block
    (500_000, 2),  # 6 * 65536
    (-1, 1),
    (-1, 2),
    (123_456, 5000),  # 176 steps wide: 11 16-step blocks
])
def test_buckets_are_a_group_by_over_the_points(million, since, max_points):
    """The same buckets as the obvious query (GROUP BY step / width), which is too slow to
    serve: it reads every point. since_step may cut a block of every level: its points
    after since_step are counted, the others not."""
    started = time.perf_counter()
    out, width = check_against_reference(million.engine, million.job_id, "big", since,
                                         max_points)
    print(f"\n{N - since:,} points in {len(out['step'])} buckets of {width} steps: read and "
          f"reference in {(time.perf_counter() - started) * 1000:.0f} ms")
    check_buckets(out, million, first_step=max(since + 1, 1), max_points=max_points)


def test_raw_at_the_limit_and_downsampled_past_it(million):
    tail = N - 5000
    out, _ = timed_read(million, names=["big"], since_step=tail, max_points=5000)
    assert out == {"big": {"step": million.steps[tail:].tolist(),
                           "value": million.values[tail:].tolist(),
                           "epoch": million.epochs[tail:].tolist()}}
    # One point too many: buckets of 2 steps, read from the points.
    out, width = check_against_reference(million.engine, million.job_id, "big", tail, 4999)
    assert width == 2
    check_buckets(out, million, first_step=tail + 1, max_points=4999)


def test_a_short_series_stays_raw_beside_a_long_one(million):
    out, elapsed = timed_read(million, names=None, since_step=-1, max_points=1000)
    print(f"\nevery series, max_points 1000: {elapsed * 1000:.0f} ms")
    assert sorted(out) == ["big", "sparse", "val_loss"]
    assert out["big"]["downsampled"] is True and out["sparse"]["downsampled"] is True
    assert out["val_loss"] == {"step": million.steps[9_999::10_000].tolist(),
                               "value": (-million.values[9_999::10_000]).tolist(),
                               "epoch": million.epochs[9_999::10_000].tolist()}
    out, _ = timed_read(million, names=["val_loss", "absent"], since_step=500_000,
                        max_points=10)
    assert list(out) == ["val_loss"] and out["val_loss"]["step"][-1] == N
    assert len(out["val_loss"]["step"]) <= 10
    check_against_reference(million.engine, million.job_id, "val_loss", 500_000, 10)


def test_a_sparse_series(million):
    for since, max_points in ((-1, 1000), (333_333, 100), (-1, 40_000)):
        check_against_reference(million.engine, million.job_id, "sparse", since, max_points)


def test_the_rollups_are_the_points_grouped(million):
    assert check_rollups(million.engine, million.job_id) > N // 16


def copies_running(settings: Settings, within_s: float) -> int:
    """The exports still running in the session database, after waiting up to within_s for
    them to end."""
    deadline = time.monotonic() + within_s
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        while True:
            running = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'active' AND query LIKE '%COPY (%' AND pid <> pg_backend_pid()"
            ).fetchone()[0]
            if running == 0 or time.monotonic() > deadline:
                return running
            time.sleep(0.2)


def test_over_http_a_million_points_downsampled_and_exported(client, settings):
    """In the session database, which the API serves; the job is deleted afterwards."""
    engine = make_engine(settings)
    series = write_million(engine)
    url = f"/v1/jobs/{series.job_id}"
    try:
        started = time.perf_counter()
        response = client.get(f"{url}/metrics", params={"max_points": 1000, "names": "big"})
        print(f"\nGET metrics, {N:,} points to 1000: {(time.perf_counter() - started) * 1000:.0f}"
              " ms")
        assert response.status_code == 200
        big = response.json()["series"]["big"]
        assert list(big) == ["step", "value", "epoch", "min", "max", "mean", "downsampled"]
        check_buckets(big, series, first_step=1, max_points=1000)

        started = time.perf_counter()
        lines = 0
        with client.stream("GET", f"{url}/metrics.csv", params={"names": "big"}) as export:
            assert export.headers["content-disposition"] == (
                'attachment; filename="a-million-metrics.csv"')
            tail = b""
            for chunk in export.iter_bytes():
                lines += chunk.count(b"\n")
                tail = (tail + chunk)[-200:]
        print(f"GET metrics.csv, {N:,} rows: {time.perf_counter() - started:.1f} s")
        assert lines == N + 1
        assert tail.decode().splitlines()[-1].startswith(f"big,{N},{series.epochs[-1]},")

        # A download abandoned after its first chunk must not leave its COPY running.
        with client.stream("GET", f"{url}/metrics.csv") as export:
            assert next(export.iter_bytes()).startswith(b"name,step,epoch,value,wall_time\n")
        assert copies_running(settings, within_s=10) == 0
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM job WHERE id = :id"), {"id": series.job_id})
        engine.dispose()
