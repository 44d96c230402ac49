"""Metrics: points persisted per second with 1, 8 and 32 concurrent writers, and a
million-point series read back downsampled to 1,000 points (repo call and HTTP), on a
database whose statistics were never analyzed and after VACUUM ANALYZE. Issue 7, "Metrics".

Each writer is its own process with its own connection, as each training child is, writing
its own running job's points the way MetricSink._write does: one transaction per flush of
a fixed batch holding write_points (COPY into a staging table, then the insert fenced on
job_id, attempt and state, with the rollups of the rows it inserted) and record_progress
(the job's progress and summary).

    python bench/metrics_ingest.py            # full size, alone on the machine (~3 min)
    python bench/metrics_ingest.py --quick    # tiny sizes: proves the script works
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier

import httpx
import psycopg
from report import header, median, p99, table
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from stack import Stack, create_database, drop_database

from core.progress import Progress
from core.repo import jobs as job_repo
from core.repo import metrics as metric_repo
from core.settings import Settings

INGEST_TARGET = 100_000  # points/s, issue 7
READ_TARGET_MS = 50.0  # the downsampled read, issue 7
SERIES = "train_loss_step"  # the per-step series the training loop logs, with "lr" beside it
COLD_TIMEOUT_S = 120  # a cold plan slower than this is reported, not waited out


def sqlalchemy_url(url: str) -> str:
    return Settings(database_url=url).sqlalchemy_url


def make_points(n: int, offset: int = 0) -> list[metric_repo.Point]:
    """n points as the training loop logs them: per step a train_loss_step and an lr."""
    now = datetime.now(UTC)
    points = []
    for i in range(offset, offset + n):
        step, name = divmod(i, 2)
        value = 2.0 / (1 + step * 1e-3) if name == 0 else 1e-3
        points.append(metric_repo.Point(name=SERIES if name == 0 else "lr", step=step,
                                        value=value, epoch=step // 1000, wall_time=now))
    return points


def create_running_jobs(engine: Engine, n: int) -> list[tuple[uuid.UUID, int]]:
    """n jobs claimed as a worker claims them, so that the fenced insert accepts their points."""
    jobs = []
    with Session(engine) as session, session.begin():
        for i in range(n):
            job = job_repo.create_job(session, name=f"bench-{i}", spec={}, max_attempts=3,
                                      model_summary={}, total_steps=0)
            attempt = job_repo.claim_job(session, job.id, "bench@writer", ttl_s=3600)
            assert attempt is not None
            jobs.append((job.id, attempt))
    return jobs


@dataclass
class Round:
    started: float  # time.monotonic(): one clock for every process on the machine
    ended: float
    rows: int
    flush_s: list[float]


def _writer(url: str, job_id: uuid.UUID, attempt: int, n_points: int, batch: int, rounds: int,
            barrier: Barrier, results: mp.Queue) -> None:
    engine = create_engine(sqlalchemy_url(url), pool_size=1)
    points = make_points(n_points)
    batches = [points[i:i + batch] for i in range(0, len(points), batch)]
    with engine.begin() as conn:
        key_ids = metric_repo.metric_key_ids(conn, [SERIES, "lr"])
    summary = {"latest": {SERIES: points[-2].value}, "best": {}, "test": {}}
    for _ in range(rounds):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # the parent gave up (Ctrl-C or a failure)
            return
        flush_s, rows = [], 0
        started = time.monotonic()
        for chunk in batches:
            t0 = time.perf_counter()
            with engine.begin() as conn:
                rows += metric_repo.write_points(conn, job_id, attempt, chunk, key_ids)
                progress = Progress(epoch=chunk[-1].epoch, step=chunk[-1].step,
                                    total_steps=0)
                owned = job_repo.record_progress(Session(bind=conn), job_id, attempt,
                                                 progress, summary)
            flush_s.append(time.perf_counter() - t0)
            assert owned, "the job must stay running with this attempt"
        results.put(Round(started, time.monotonic(), rows, flush_s))
    engine.dispose()


@dataclass
class IngestResult:
    writers: int
    points_per_s: list[float]  # one per timed round
    flush_s: list[float]  # every flush of every timed round


def measure_ingest(url: str, writers: int, total_points: int, batch: int,
                   repeats: int) -> IngestResult:
    """`total_points` split over `writers` processes, one untimed round and then `repeats`
    timed ones, the metric tables emptied before each so that every round sees the same tables."""
    engine = create_engine(sqlalchemy_url(url))
    jobs = create_running_jobs(engine, writers)
    # Forked, not spawned: 32 interpreters importing SQLAlchemy cost more CPU than a quick
    # run's measurement on 2 cores. The pool is emptied first so that no child inherits a
    # connection of the parent's; each child opens its own.
    engine.dispose()
    per_writer = total_points // writers
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(writers + 1)
    results: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, job_id, attempt, per_writer, batch,
                                               repeats + 1, barrier, results), daemon=True)
             for job_id, attempt in jobs]
    for proc in procs:
        proc.start()
    rates, flushes = [], []
    try:
        for round_no in range(repeats + 1):
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE metric, metric_rollup"))
            barrier.wait(timeout=300)
            done = [results.get(timeout=600) for _ in range(writers)]
            rows = sum(r.rows for r in done)
            expected = per_writer * writers
            assert rows == expected, f"{rows} rows persisted, not {expected}"
            if round_no:  # round 0 warms up connections, staging tables and caches
                span = max(r.ended for r in done) - min(r.started for r in done)
                rates.append(rows / span)
                flushes += [f for r in done for f in r.flush_s]
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM metric")).scalar()
        assert stored == per_writer * writers, f"{stored} rows in the table"
    finally:
        # After a failure or Ctrl-C the writers may be waiting at the barrier: break it so
        # that they exit at once instead of waiting for a round that never comes.
        barrier.abort()
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        engine.dispose()
    return IngestResult(writers, rates, flushes)


def load_series(url: str, n_steps: int) -> uuid.UUID:
    """One job with n_steps points of SERIES and as many of lr, generated in the server, and
    their rollups rebuilt from them: the ingest path is measured above, here only the read
    is. Autovacuum is switched off for the tables so that nothing analyzes them behind the
    cold measurement's back."""
    engine = create_engine(sqlalchemy_url(url))
    with engine.begin() as conn:
        for table_name in ("metric", "metric_rollup", "job", "metric_key"):
            conn.execute(text(f"ALTER TABLE {table_name} SET (autovacuum_enabled = off)"))
    job_id, attempt = create_running_jobs(engine, 1)[0]
    with engine.begin() as conn:
        key_ids = metric_repo.metric_key_ids(conn, [SERIES, "lr"])
        for name, value in ((SERIES, "2.0 / (1 + s * 1e-3) + 0.1 * sin(s)"), ("lr", "1e-3")):
            conn.execute(text(
                "INSERT INTO metric (job_id, key_id, step, value, epoch, wall_time) "
                f"SELECT :job, :key, s, {value}, s / 1000, now() "
                "FROM generate_series(0, :n - 1) AS s"
            ), {"job": job_id, "key": key_ids[name], "n": n_steps})
        metric_repo.rebuild_rollups(conn, job_id)
    engine.dispose()
    assert attempt == 1
    return job_id


def never_analyzed(url: str) -> bool:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.reltuples, s.last_analyze, s.last_autoanalyze FROM pg_class c "
            "JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "WHERE c.relname IN ('metric', 'metric_rollup')"
        ).fetchall()
    assert len(rows) == 2
    return all(reltuples < 0 and last_analyze is None and last_autoanalyze is None
               for reltuples, last_analyze, last_autoanalyze in rows)


def vacuum_analyze(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE metric, metric_rollup, metric_key, job")


@dataclass
class Timing:
    first_s: float  # the very first call: a cold plan shows here
    repeat_s: list[float]


def time_calls(call: Callable[[], int], repeats: int, warmup: int) -> Timing:
    """The first call on its own, then `warmup` untimed calls, then `repeats` timed ones. Each
    call returns how many points it got, at most the max_points asked for (the buckets are
    aligned to a multiple of their width, so a series fills from about half to all of them)."""
    t0 = time.perf_counter()
    try:
        call()
    except (httpx.HTTPError, DBAPIError) as exc:  # a statement timeout: a plan gone wrong
        print(f"DEFECT: the first call failed after {time.perf_counter() - t0:.1f} s: {exc}")
        return Timing(float("inf"), [float("nan")])
    first = time.perf_counter() - t0
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return Timing(first, times)


def repo_read(engine: Engine, job_id: uuid.UUID, max_points: int) -> Callable[[], int]:
    def call() -> int:
        with Session(engine) as session, session.begin():
            session.execute(text(f"SET LOCAL statement_timeout = '{COLD_TIMEOUT_S}s'"))
            series = metric_repo.read_series(session, job_id, [SERIES], -1, max_points)
        n = len(series[SERIES]["step"])
        assert series[SERIES].get("downsampled") and 0 < n <= max_points, n
        return n
    return call


def http_read(client: httpx.Client, job_id: uuid.UUID, max_points: int) -> Callable[[], int]:
    def call() -> int:
        response = client.get(f"/v1/jobs/{job_id}/metrics",
                              params={"names": SERIES, "max_points": max_points})
        response.raise_for_status()
        n = len(response.json()["series"][SERIES]["step"])
        assert 0 < n <= max_points, n
        return n
    return call


def measure_reads(stack: Stack, job_id: uuid.UUID, max_points: int, repeats: int,
                  ) -> list[tuple[str, str, Timing]]:
    """Cold (never analyzed, first call first), then warm (after VACUUM ANALYZE)."""
    engine = create_engine(sqlalchemy_url(stack.database_url))
    out = []
    try:
        with httpx.Client(base_url=stack.api_url, timeout=COLD_TIMEOUT_S + 10) as client:
            for stats in ("never analyzed", "VACUUM ANALYZE"):
                if stats == "never analyzed":
                    assert never_analyzed(stack.database_url), "the metric tables were analyzed"
                else:
                    vacuum_analyze(stack.database_url)
                out.append(("repo read_series", stats,
                            time_calls(repo_read(engine, job_id, max_points), repeats, 2)))
                out.append(("HTTP GET /metrics", stats,
                            time_calls(http_read(client, job_id, max_points), repeats, 2)))
    finally:
        engine.dispose()
    return out


def ingest_table(results: Sequence[IngestResult]) -> str:
    base = median(results[0].points_per_s)
    rows = [[r.writers, f"{median(r.points_per_s):,.0f}", f"{min(r.points_per_s):,.0f}",
             median(r.flush_s) * 1e3, p99(r.flush_s) * 1e3, median(r.points_per_s) / base,
             median(r.points_per_s) / INGEST_TARGET] for r in results]
    return table(["writers", "points/s (median)", "points/s (worst)", "flush ms (median)",
                  "flush ms (p99)", "vs 1 writer", f"vs target {INGEST_TARGET:,}/s"], rows)


def read_table(reads: Sequence[tuple[str, str, Timing]]) -> str:
    warm = {what: median(t.repeat_s) for what, stats, t in reads if stats == "VACUUM ANALYZE"}
    repo_warm = warm["repo read_series"]
    rows = [[what, stats, t.first_s * 1e3, median(t.repeat_s) * 1e3, p99(t.repeat_s) * 1e3,
             median(t.repeat_s) / warm[what], median(t.repeat_s) / repo_warm,
             median(t.repeat_s) * 1e3 / READ_TARGET_MS] for what, stats, t in reads]
    return table(["read", "statistics", "first call ms", "median ms", "p99 ms",
                  "vs warm", "vs warm repo", f"vs target {READ_TARGET_MS:.0f} ms"], rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, well under a minute")
    parser.add_argument("--points", type=int, help="points per ingest round, over all writers")
    parser.add_argument("--writers", default="1,8,32")
    parser.add_argument("--batch", type=int, default=5000, help="points per flush")
    parser.add_argument("--repeats", type=int, help="timed rounds / reads (after a warm-up)")
    parser.add_argument("--series", type=int, help="steps in the series read back")
    parser.add_argument("--max-points", type=int, default=1000)
    args = parser.parse_args(argv)
    points = args.points or (32_000 if args.quick else 500_000)
    repeats = args.repeats or (2 if args.quick else 3)
    series = args.series or (50_000 if args.quick else 1_000_000)
    read_repeats = 5 if args.quick else 30
    writers = [int(w) for w in args.writers.split(",")]

    print(header("Metrics: ingest and downsampled read"))
    name, url = create_database("bench_ingest")
    try:
        ingest = [measure_ingest(url, n, points, args.batch, repeats) for n in writers]
    finally:
        drop_database(name)
    print(f"Ingest: {points:,} points per round ({SERIES} and lr per step) over N writer "
          f"processes, {args.batch:,} points per flush (write_points + record_progress in one "
          f"transaction), 1 warm-up round then {repeats} timed rounds, metric tables truncated "
          "before each; points/s = rows persisted / (last writer done - first writer "
          "started).\n")
    print(ingest_table(ingest))

    with Stack() as stack:
        job_id = load_series(stack.database_url, series)
        stack.start_api()
        reads = measure_reads(stack, job_id, args.max_points, read_repeats)
    print(f"\nRead: one job with {series:,} steps of {SERIES} (and as many of lr), read back as "
          f"at most {args.max_points:,} aligned buckets (from its rollups, rebuilt after "
          "loading); the API as a real process (1 uvicorn worker), "
          f"{read_repeats} timed calls after 2 untimed ones; 'never analyzed': a fresh "
          "database with autovacuum off for the metric tables, measured before anything "
          "analyzed them.\n")
    print(read_table(reads))


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so that the finally blocks drop the databases


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    main()
