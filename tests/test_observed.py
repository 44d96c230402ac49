"""The figures /metrics reads from PostgreSQL (core/repo/observed.py), against the same
figures computed a second way: one count(*) FILTER per bound, and by hand. Waits exactly on
a bucket's bound count in that bucket, as Prometheus's `le` means."""

from __future__ import annotations

import asyncio

import psycopg

from core.repo.observed import LATENCY_BUCKETS, read_observed

# (state, seconds from submission to start; None: never started)
JOBS = [("queued", None), ("queued", None), ("running", 0.05), ("succeeded", 0.07),
        ("succeeded", 1.0), ("succeeded", 2.5), ("failed", 3599.5), ("cancelled", 20000.0),
        ("cancelled", None), ("queued", 30.0)]  # the last: started once, then requeued


def _insert_jobs(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for n, (state, wait) in enumerate(JOBS):
            conn.execute(
                "INSERT INTO job (id, name, spec, state, created_at, started_at) VALUES "
                "(gen_random_uuid(), %s, '{}', %s, now() - interval '1 hour', "
                " now() - interval '1 hour' + make_interval(secs => %s))",
                (f"job-{n}", state, wait))
        conn.execute("INSERT INTO worker (name, host, pid, last_seen_at) VALUES "
                     "('gone@a', 'a', 1, now() - interval '2 days'), "
                     "('idle@b', 'b', 2, now() - interval '3 seconds')")


def test_figures_agree_with_a_direct_count(fresh_database: str) -> None:
    _insert_jobs(fresh_database)

    async def read():
        async with await psycopg.AsyncConnection.connect(fresh_database,
                                                         autocommit=True) as conn:
            return await read_observed(conn)

    seen = asyncio.run(read())
    with psycopg.connect(fresh_database) as conn:
        direct = ", ".join(
            f"count(*) FILTER (WHERE extract(epoch FROM started_at - created_at) <= {bound})"
            for bound in LATENCY_BUCKETS)
        *buckets, started = conn.execute(f"SELECT {direct}, count(started_at) FROM job"
                                         ).fetchone()
    assert seen.latency_buckets == buckets
    waits = [w for _, w in JOBS if w is not None]
    assert seen.latency_buckets == [sum(w <= b for w in waits) for b in LATENCY_BUCKETS]
    assert seen.latency_count == started == len(waits)
    assert abs(seen.latency_sum_s - sum(waits)) < 1e-3
    assert seen.jobs == {"queued": 3, "running": 1, "succeeded": 3, "failed": 1,
                         "cancelled": 2}
    assert 3590 < seen.oldest_queued_s < 3700
    # A worker gone for two days is left out; a live one is there, idle.
    assert [(w.name, w.samples_per_s, w.flush_age_s) for w in seen.workers] == [
        ("idle@b", None, None)]
    assert 2 < seen.workers[0].heartbeat_age_s < 60
    assert seen.points_written == 0
