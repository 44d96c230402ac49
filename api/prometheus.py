"""The database's figures as Prometheus metric families, read once per scrape.

`DatabaseFigures.read` asks PostgreSQL on a connection of its own, bounded like the API's
database probe (api/db_watch.py): a database that is down, or does not answer within
TRAINDOCK_METRICS_QUERY_TIMEOUT_S, costs the scrape that long at most, and the scrape then
answers with `traindock_database_up 0` and the API's own series, without the database's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import psycopg
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from api.db_watch import DatabaseWatch, bounded
from core.repo.observed import LATENCY_BUCKETS, Observed, read_observed
from core.settings import Settings
from core.tables import JOB_STATES

log = logging.getLogger(__name__)


class DatabaseFigures:
    def __init__(self, settings: Settings, watch: DatabaseWatch) -> None:
        self.conninfo = settings.psycopg_url
        self.timeout_s = settings.metrics_query_timeout_s
        self.watch = watch
        self._conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()  # one read at a time on the one connection
        self.orphans: set[asyncio.Task] = set()

    async def read(self) -> tuple[Observed | None, float]:
        """The figures (None when the database did not give them) and the seconds it took."""
        began = time.perf_counter()
        if self.watch.down.is_set():
            return None, 0.0
        async with self._lock:
            seen: list[Observed] = []
            problem = await bounded(self._read(seen), self.timeout_s, self.orphans)
            if problem is not None:
                self._conn = None  # a connection that did not answer is never asked again
                log.warning("/metrics: no figures from the database: %s", problem)
                return None, time.perf_counter() - began
        return seen[0], time.perf_counter() - began

    async def _read(self, into: list[Observed]) -> None:
        if self._conn is None or self._conn.closed:
            timeout_ms = int(self.timeout_s * 1000)
            self._conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, connect_timeout=max(2, int(self.timeout_s)),
                options=f"-c statement_timeout={timeout_ms}", application_name="traindock-metrics")
        into.append(await read_observed(self._conn))


class FiguresCollector:
    """A prometheus_client collector over one read's figures."""

    def __init__(self, seen: Observed | None, read_s: float) -> None:
        self.seen = seen
        self.read_s = read_s

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("traindock_database_up", "1 when this scrape read the job and "
                               "worker figures from PostgreSQL; 0 when it could not (the "
                               "series read from it are then absent)")
        up.add_metric([], 1 if self.seen is not None else 0)
        yield up
        took = GaugeMetricFamily("traindock_metrics_read_seconds",
                                 "how long this scrape's database read took")
        took.add_metric([], self.read_s)
        yield took
        if self.seen is not None:
            yield from figures_families(self.seen)


def figures_families(seen: Observed) -> Iterator[Metric]:
    jobs = GaugeMetricFamily("traindock_jobs", "jobs by state", labels=["state"])
    for state in JOB_STATES:
        jobs.add_metric([state], seen.jobs.get(state, 0))
    yield jobs
    depth = GaugeMetricFamily("traindock_queue_depth", "jobs queued, waiting for a worker")
    depth.add_metric([], seen.jobs.get("queued", 0))
    yield depth
    oldest = GaugeMetricFamily("traindock_queue_oldest_seconds",
                               "age of the oldest queued job since it was submitted "
                               "(0 when none is queued)")
    oldest.add_metric([], seen.oldest_queued_s or 0.0)
    yield oldest

    latency = HistogramMetricFamily(
        "traindock_job_start_latency_seconds",
        "time from a job's submission to its first start by a worker, over every job in the "
        "database that has started (deleting jobs lowers it, which Prometheus reads as a reset)")
    buckets = [(floatToGoString(bound), count)
               for bound, count in zip(LATENCY_BUCKETS, seen.latency_buckets, strict=True)]
    latency.add_metric([], [*buckets, ("+Inf", seen.latency_count)], seen.latency_sum_s)
    yield latency

    heartbeat = GaugeMetricFamily("traindock_worker_heartbeat_age_seconds",
                                  "seconds since the worker last reported itself (it does every "
                                  "TRAINDOCK_WORKER_HEARTBEAT_S)", labels=["worker"])
    speed = GaugeMetricFamily("traindock_worker_samples_per_second",
                              "training samples per second of the job the worker runs, as of "
                              "its latest epoch", labels=["worker"])
    flush = GaugeMetricFamily("traindock_worker_metric_flush_age_seconds",
                              "seconds since the job the worker runs last flushed its metric "
                              "points and progress (every TRAINDOCK_METRIC_FLUSH_S while it "
                              "trains)", labels=["worker"])
    for worker in seen.workers:
        heartbeat.add_metric([worker.name], worker.heartbeat_age_s)
        if worker.samples_per_s is not None:
            speed.add_metric([worker.name], worker.samples_per_s)
        if worker.flush_age_s is not None:
            flush.add_metric([worker.name], worker.flush_age_s)
    yield heartbeat
    yield speed
    yield flush

    if seen.points_written is not None:
        points = CounterMetricFamily("traindock_metric_points_written",
                                     "metric points training processes have flushed to the "
                                     "database (PostgreSQL's insert count for the metric table)")
        points.add_metric([], seen.points_written)
        yield points
