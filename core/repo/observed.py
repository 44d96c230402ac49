"""The figures /metrics reports from the database: jobs by state, the queue, submit-to-start
latency, each worker's heartbeat, training speed and metric-flush lag, and points written.

Read at scrape time, so that every API process reports the same numbers and nothing is lost
when a process restarts: the database is the record of all of them (docs/integration.md,
"Prometheus"). Three statements: one pass over `job` grouped by state, one over the live
`worker` rows, one row of PostgreSQL's own table statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

# Submit-to-start latency buckets, in seconds: a warm worker starts a job in a tenth of a
# second (docs/benchmarks.md); a busy queue holds one for hours.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)

# A worker that stopped without saying so (killed, its machine lost) keeps its row; it is
# reported, with its heartbeat's age growing, for a day, then left out.
WORKER_WINDOW = "1 day"


@dataclass
class WorkerFigures:
    name: str
    heartbeat_age_s: float
    samples_per_s: float | None  # the running job's latest; None when idle
    flush_age_s: float | None  # since its running job last flushed points and progress


@dataclass
class Observed:
    jobs: dict[str, int] = field(default_factory=dict)
    oldest_queued_s: float | None = None
    # Cumulative counts per LATENCY_BUCKETS bound, and the count and sum of all started jobs.
    latency_buckets: list[int] = field(default_factory=list)
    latency_count: int = 0
    latency_sum_s: float = 0.0
    workers: list[WorkerFigures] = field(default_factory=list)
    points_written: int | None = None


# One pass over `job`, grouped by state and by the first latency bucket a job's wait fits
# (wait <= LATENCY_BUCKETS[i], as Prometheus's `le`; len: above them all; NULL: not started),
# which read_observed adds up into the cumulative counts. width_bucket() is lower-inclusive,
# hence the negated wait against the negated bounds. About half the time of one count(*) FILTER
# per bound (0.09 to 0.17 s against 0.2 to 0.47 s for 100,000 jobs, on 2 busy cores).
_WAIT = "extract(epoch FROM started_at - created_at)"
_NEGATED = ", ".join(str(-bound) for bound in reversed(LATENCY_BUCKETS))
JOBS_SQL = f"""
SELECT state,
       {len(LATENCY_BUCKETS)} - width_bucket(-{_WAIT}::float8, ARRAY[{_NEGATED}]::float8[]),
       count(*),
       coalesce(sum({_WAIT}), 0),
       extract(epoch FROM now() - min(created_at))
FROM job GROUP BY 1, 2
"""

WORKERS_SQL = f"""
SELECT w.name,
       extract(epoch FROM now() - w.last_seen_at),
       (j.summary -> 'latest' ->> 'samples_per_s')::float8,
       extract(epoch FROM now() - j.updated_at)
FROM worker w
LEFT JOIN job j ON j.id = w.current_job_id AND j.state = 'running'
WHERE w.stopped_at IS NULL AND w.last_seen_at > now() - interval '{WORKER_WINDOW}'
ORDER BY w.name
"""

# Rows inserted into `metric` since PostgreSQL's statistics were last reset: every point a
# training process flushed (COPY counts). A counter: its rate is the flush rate in points/s.
POINTS_SQL = """
SELECT n_tup_ins FROM pg_stat_user_tables
WHERE relname = 'metric' AND schemaname = ANY (current_schemas(false))
"""


async def read_observed(conn: psycopg.AsyncConnection) -> Observed:
    seen = Observed(latency_buckets=[0] * len(LATENCY_BUCKETS))
    cursor = await conn.execute(JOBS_SQL)
    for state, first_bucket, count, waited_s, oldest_s in await cursor.fetchall():
        seen.jobs[state] = seen.jobs.get(state, 0) + count
        if state == "queued" and oldest_s is not None:
            seen.oldest_queued_s = max(seen.oldest_queued_s or 0.0, float(oldest_s))
        if first_bucket is None:  # never started
            continue
        seen.latency_count += count
        seen.latency_sum_s += float(waited_s)
        for i in range(first_bucket, len(LATENCY_BUCKETS)):
            seen.latency_buckets[i] += count
    cursor = await conn.execute(WORKERS_SQL)
    seen.workers = [
        WorkerFigures(name, float(age), speed, None if flushed is None else float(flushed))
        for name, age, speed, flushed in await cursor.fetchall()
    ]
    cursor = await conn.execute(POINTS_SQL)
    row = await cursor.fetchone()
    seen.points_written = int(row[0]) if row is not None else None
    return seen
