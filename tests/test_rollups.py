"""The rollup table against the points it summarizes: written by write_points in flushes that
repeat and reorder points, trimmed by delete_points_after and written again, and backfilled
by the migration; each time equal to a plain GROUP BY over the points, and the downsampled
reads equal to a GROUP BY step / width over the points. The helpers here are the references
test_downsample.py uses too."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from itertools import chain, count

import numpy as np
import pytest
from sqlalchemy import Engine, insert, inspect, text
from sqlalchemy.orm import Session

from core.db import make_engine
from core.migrate import upgrade
from core.repo import jobs as job_repo
from core.repo import metrics as metric_repo
from core.repo.rollups import ROLLUP_LEVELS
from core.settings import Settings
from core.tables import Job
from tests.conftest import create_database, drop_database, load_example


def expected_width(lo: int, hi: int, max_points: int) -> int:
    """The bucket width the docs promise for steps lo..hi: the smallest of 1..15, of 1 to 16
    blocks of a rollup level below the coarsest, or of any number of the coarsest blocks, that
    covers lo..hi in at most max_points aligned buckets."""
    finer = sorted({*range(1, 16), *(m << level for level in ROLLUP_LEVELS[:-1]
                                     for m in range(1, 17))})
    coarsest = (m << ROLLUP_LEVELS[-1] for m in count(1))
    for width in chain(finer, (w for w in coarsest if w > finer[-1])):
        if hi // width - lo // width < max_points:
            return width
    raise AssertionError("unreachable: a width past hi - lo always fits")


def reference_buckets(db: Engine, job_id: uuid.UUID, name: str, since: int,
                      width: int) -> dict[str, list]:
    """The downsampled answer computed the obvious way, from every point (too slow to serve)."""
    with Session(db) as session:
        rows = session.execute(text("""
            SELECT max(step), (array_agg(value ORDER BY step DESC))[1],
                   (array_agg(epoch ORDER BY step DESC))[1], min(value), max(value), avg(value)
            FROM metric JOIN metric_key k ON k.id = key_id
            WHERE job_id = :job AND k.name = :name AND step > :since
            GROUP BY step / :width ORDER BY 1
        """), {"job": job_id, "name": name, "since": since, "width": width}).all()
    columns = ("step", "value", "epoch", "min", "max", "mean")
    return {column: [row[i] for row in rows] for i, column in enumerate(columns)}


def check_against_reference(db: Engine, job_id: uuid.UUID, name: str, since: int,
                            max_points: int) -> tuple[dict, int]:
    """read_series against reference_buckets at the documented width; returns the answer and
    that width."""
    with Session(db) as session:
        out = metric_repo.read_series(session, job_id, [name], since, max_points)[name]
        lo, hi = session.execute(text(
            "SELECT min(step), max(step) FROM metric JOIN metric_key k ON k.id = key_id "
            "WHERE job_id = :job AND k.name = :name AND step > :since"
        ), {"job": job_id, "name": name, "since": since}).one()
    width = expected_width(lo, hi, max_points)
    reference = reference_buckets(db, job_id, name, since, width)
    assert out["downsampled"] is True
    assert 0 < len(out["step"]) <= max_points
    for column in ("step", "value", "epoch", "min", "max"):
        assert out[column] == reference[column], column
    assert out["mean"] == pytest.approx(reference["mean"], rel=1e-9, abs=1e-12)
    return out, width


_REFERENCE_ROLLUPS = """
    SELECT key_id, {level}, step >> {level}, count(*), min(value), max(value), sum(value),
           max(step), (array_agg(value ORDER BY step DESC))[1],
           (array_agg(epoch ORDER BY step DESC))[1]
    FROM metric WHERE job_id = :job GROUP BY key_id, step >> {level}
"""


def check_rollups(db: Engine, job_id: uuid.UUID) -> int:
    """The job's rollup rows against a GROUP BY of its points at every level (sums to
    rounding: they are added in another order); returns how many there are."""
    with Session(db) as session:
        stored = session.execute(text(
            "SELECT key_id, level, block, n, vmin, vmax, vsum, last_step, last_value, "
            "last_epoch FROM metric_rollup WHERE job_id = :job ORDER BY 1, 2, 3"
        ), {"job": job_id}).all()
        reference = session.execute(text(
            " UNION ALL ".join(_REFERENCE_ROLLUPS.format(level=level) for level in ROLLUP_LEVELS)
            + " ORDER BY 1, 2, 3"
        ), {"job": job_id}).all()
    exact = [(*row[:6], *row[7:]) for row in stored]
    assert exact == [(*row[:6], *row[7:]) for row in reference]
    np.testing.assert_allclose([row[6] for row in stored], [row[6] for row in reference],
                               rtol=1e-12, atol=1e-9)
    return len(stored)


@pytest.fixture
def engine(fresh_database):
    engine = make_engine(Settings(database_url=fresh_database))
    yield engine
    engine.dispose()


def claimed_job(engine: Engine, name: str = "rollups") -> tuple[uuid.UUID, int]:
    """A running job (so points may be written) that no worker ever sees. Inserted with the
    new-job columns alone, so that it works on an older schema too (the migration test)."""
    values = job_repo.new_job_values(name=name, spec=load_example("digits-mlp"), max_attempts=1,
                                     model_summary={}, total_steps=0)
    present = {column["name"] for column in inspect(engine).get_columns("job")}
    values = {k: v for k, v in values.items() if k in present}  # an older schema has fewer
    with engine.begin() as conn:
        conn.execute(insert(Job.__table__).values(**values))
    job_id = values["id"]
    with Session(engine) as session, session.begin():
        attempt = job_repo.claim_job(session, job_id, "test", 600)
    assert attempt is not None
    return job_id, attempt


def flush(engine: Engine, job_id: uuid.UUID, attempt: int, points: list) -> int:
    with engine.begin() as conn:
        keys = metric_repo.metric_key_ids(conn, sorted({p.name for p in points}))
        return metric_repo.write_points(conn, job_id, attempt, points, keys)


def points(name: str, steps, values) -> list[metric_repo.Point]:
    now = datetime.now(UTC)
    return [metric_repo.Point(name=name, step=int(s), value=float(v),
                              epoch=int(s) // 1000 + 1, wall_time=now)
            for s, v in zip(steps, values, strict=True)]


def test_flushes_with_repeated_and_reordered_points(engine):
    """Each flush repeats the last 500 points of the one before with other values (skipped
    as duplicates, so counted once and never seen), and two flushes arrive in reverse order:
    the rollups are the points grouped, whatever the order of arrival."""
    job_id, attempt = claimed_job(engine)
    rng = np.random.default_rng(1)
    steps = np.arange(20_000)
    values = np.cumsum(rng.normal(0, 1, len(steps)))
    dense = points("loss", steps, values)
    sparse = points("acc", steps[::37], -values[::37])
    chunks = [dense[i:i + 3000] for i in range(0, len(dense), 3000)]
    chunks[2], chunks[3] = chunks[3], chunks[2]
    written = 0
    for i, chunk in enumerate(chunks):
        repeated = [replace(p, value=p.value + 1000) for p in chunks[i - 1][-500:]] if i else []
        written += flush(engine, job_id, attempt, repeated + chunk)
    written += flush(engine, job_id, attempt, sparse[:300])
    written += flush(engine, job_id, attempt, sparse)
    assert written == len(dense) + len(sparse)
    assert check_rollups(engine, job_id) > 1250  # 20,000 steps: 1250 16-step blocks of loss

    for since, max_points in ((-1, 100), (4321, 333), (-1, 2000), (19_000, 998), (-1, 1),
                              (7, 2)):
        check_against_reference(engine, job_id, "loss", since, max_points)
    for since, max_points in ((-1, 100), (5000, 7)):
        check_against_reference(engine, job_id, "acc", since, max_points)
    with Session(engine) as session:  # the repeated values were skipped
        out = metric_repo.read_series(session, job_id, ["loss"], -1, 20_000)["loss"]
    assert out["value"] == values.tolist()


def test_a_trim_then_new_points_equal_a_fresh_rebuild(engine):
    """A resumed attempt drops the points past its checkpoint (mid-block at every level) and
    logs others in their place: the rollups and the reads are those of the final points."""
    job_id, attempt = claimed_job(engine)
    steps = np.arange(1, 70_001)
    first = np.sin(steps / 500)
    for i in range(0, len(steps), 5000):
        flush(engine, job_id, attempt, points("loss", steps[i:i + 5000], first[i:i + 5000]))
    with Session(engine) as session, session.begin():
        assert metric_repo.delete_points_after(session, job_id, 12_345) == 70_000 - 12_345
    check_rollups(engine, job_id)
    again = np.arange(12_346, 80_001)
    for i in range(0, len(again), 5000):
        flush(engine, job_id, attempt, points("loss", again[i:i + 5000], -again[i:i + 5000]))
    check_rollups(engine, job_id)
    for since, max_points in ((-1, 1000), (12_000, 333), (12_345, 50), (-1, 3)):
        check_against_reference(engine, job_id, "loss", since, max_points)
    with Session(engine) as session, session.begin():  # and back to before the first block
        metric_repo.delete_points_after(session, job_id, 0)
    assert check_rollups(engine, job_id) == 0


def test_a_stale_attempt_adds_no_rollups(engine):
    job_id, attempt = claimed_job(engine)
    assert flush(engine, job_id, attempt + 1, points("loss", range(100), range(100))) == 0
    assert check_rollups(engine, job_id) == 0


def test_the_migration_backfills_rollups_of_existing_points():
    name = f"traindock_migr_{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=create_database(name))
    url = settings.sqlalchemy_url
    try:
        upgrade(url, "0003_datasets")
        engine = make_engine(settings)
        try:
            jobs = [claimed_job(engine, f"old-{i}")[0] for i in range(2)]
            with engine.begin() as conn:
                keys = metric_repo.metric_key_ids(conn, ["loss", "lr"])
                for job_id, n in zip(jobs, (100_000, 3), strict=True):
                    for key, value in ((keys["loss"], "sin(s)"), (keys["lr"], "1.0 / (s + 1)")):
                        conn.execute(text(
                            "INSERT INTO metric (job_id, key_id, step, value, epoch, wall_time) "
                            f"SELECT :job, :key, s * 3, {value}, s / 100, now() "
                            "FROM generate_series(0, :n - 1) AS s"
                        ), {"job": job_id, "key": key, "n": n})
            upgrade(url)
            for job_id in jobs:
                check_rollups(engine, job_id)
            check_against_reference(engine, jobs[0], "loss", 1234, 500)
        finally:
            engine.dispose()
    finally:
        drop_database(name)

