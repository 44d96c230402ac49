"""A bare Celery app for bench/queue_latency.py's floor: the same broker settings as traindock
(core.queue.celery_config: solo pool, prefetch 1, late acks) and one trivial task that notes
when it started. Run as a worker with
`python -m celery -A bench.bare_celery worker --pool=solo -Q bench_bare` and
BENCH_BARE_BROKER=redis://...; the start times go to the Redis list STARTED_KEY.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

from core.queue import celery_config
from core.settings import Settings

BARE_TASK = "bench.bare_noop"
BARE_QUEUE = "bench_bare"
STARTED_KEY = "bench:bare:started"


def make_app(broker_url: str) -> Celery:
    app = Celery("bench-bare")
    # The database URL is never used; Settings wants one.
    app.conf.update(celery_config(Settings(broker_url=broker_url)))
    app.conf.task_default_queue = BARE_QUEUE
    return app


app = make_app(os.environ.get("BENCH_BARE_BROKER", "redis://127.0.0.1:6379/0"))
_results = redis.Redis.from_url(app.conf.broker_url)


@app.task(name=BARE_TASK, bind=True)
def bare_noop(self) -> None:
    # The clock is read first: everything after it is not part of the round trip.
    started = time.time()
    _results.rpush(STARTED_KEY, f"{self.request.id} {started!r}")
