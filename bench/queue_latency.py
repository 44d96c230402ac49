"""Queue latency: submit-to-running with an idle worker, Redis and the embedded filesystem
broker, beside a bare Celery round trip on the same Redis (the floor).

One job at a time: the clock is read just before `POST /v1/jobs`; "running" is the job's
`started_at` in PostgreSQL (the claim's now()). Each job is cancelled as soon as it runs, and
the next is submitted only after the worker's task has returned and a short random pause, so
the worker is idle and the pause does not line up with the filesystem transport's polling.
Breakdown per job: submit -> row inserted (created_at: HTTP, parsing, validation), inserted ->
task received by the worker (commit, publish, broker delivery; from the worker's log, ms
resolution), received -> claimed (Celery dispatch, a session, the claim UPDATE). The training
child starts after the claim and is not part of it. All clocks are this machine's.

    python bench/queue_latency.py            # 150 jobs per broker, about 2-3 minutes
    python bench/queue_latency.py --quick    # 8 jobs, to prove it works
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import re
import sys
import time
from pathlib import Path

import httpx
import psycopg
import redis
from report import header, median, p99, table
from stack import Process, Stack

ROOT = Path(__file__).resolve().parent.parent
SPEC = {
    "name": "bench-latency",
    "dataset": {"name": "moons", "n_samples": 64},
    "model": {"layers": [{"type": "linear", "out_features": 8}, {"type": "relu"},
                         {"type": "linear", "out_features": 2}]},
    "training": {"epochs": 1, "batch_size": 32, "seed": 0},
}
# Celery's default log line: "[2026-12-01 08:00:00,123: INFO/MainProcess] Task name[id] received"
RECEIVED = re.compile(r"^\[(\S+ \S+): INFO/\w+\] Task \S+\[([0-9a-f-]{36})\] received", re.M)
WARMUP = 3


def pause() -> None:
    time.sleep(random.uniform(0.05, 0.15))


def wait_for(predicate, timeout: float, what: str, step: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"{what} after {timeout}s")


def received_times(worker: Process) -> dict[str, float]:
    # The log's times are local and naive; .timestamp() reads them as local, like time.time().
    return {job_id: datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for stamp, job_id in RECEIVED.findall(worker.log())}


def run_traindock(broker: str, jobs: int) -> dict[str, list[float]]:
    """Seconds per job for each leg, over `jobs` measured jobs after WARMUP unmeasured ones."""
    env = {"TRAINDOCK_CANCEL_POLL_S": "0.05", "OMP_NUM_THREADS": "1"}
    with Stack(broker=broker, extra_env=env) as stack:
        stack.start_api()
        worker = stack.start_worker()
        rows: list[tuple[str, float, float, float, float]] = []
        with httpx.Client(base_url=stack.api_url, timeout=30) as http, \
                psycopg.connect(stack.database_url, autocommit=True) as db:
            for i in range(WARMUP + jobs):
                pause()
                submitted = time.time()
                response = http.post("/v1/jobs", json=SPEC)
                answered = time.time()
                response.raise_for_status()
                job_id = response.json()["id"]

                def claimed(job_id: str = job_id):
                    return db.execute("SELECT created_at, started_at FROM job WHERE id = %s "
                                      "AND started_at IS NOT NULL", (job_id,)).fetchone()

                created_at, started_at = wait_for(claimed, 30, f"job {job_id} not running")
                http.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
                # Idle again only once the task has returned (and acked its message).
                wait_for(lambda job_id=job_id: f"[{job_id}] succeeded" in worker.log(), 30,
                         f"job {job_id}'s task did not return", step=0.02)
                if i >= WARMUP:
                    rows.append((job_id, submitted, answered, created_at.timestamp(),
                                 started_at.timestamp()))
        received = received_times(worker)
    legs: dict[str, list[float]] = {k: [] for k in
                                    ("total", "http", "to_insert", "to_receive", "to_claim")}
    for job_id, submitted, answered, inserted, started in rows:
        legs["total"].append(started - submitted)
        legs["http"].append(answered - submitted)
        legs["to_insert"].append(inserted - submitted)
        if job_id in received:
            legs["to_receive"].append(received[job_id] - inserted)
            legs["to_claim"].append(started - received[job_id])
    return legs


def run_bare(jobs: int) -> dict[str, list[float]]:
    """The floor: send_task of a no-op to a bare Celery worker on a private Redis, timed from
    just before the publish to the task's first line."""
    from bare_celery import BARE_QUEUE, BARE_TASK, STARTED_KEY, make_app

    with Stack(broker="redis") as stack:
        env = {**stack.env, "BENCH_BARE_BROKER": stack.broker_url, "OMP_NUM_THREADS": "1"}
        worker = Process([sys.executable, "-m", "celery", "-A", "bench.bare_celery", "worker",
                          "--pool=solo", "--loglevel=INFO", "-Q", BARE_QUEUE, "-n", "bare@bench"],
                         env, stack.log_dir / "bare-worker.log")
        stack.processes.append(worker)  # stopped by the stack's close(), even on Ctrl-C
        worker.wait_for_log("ready.", timeout=60)
        app = make_app(stack.broker_url)
        results = redis.Redis.from_url(stack.broker_url)
        legs: dict[str, list[float]] = {"total": [], "publish": []}
        try:
            for i in range(WARMUP + jobs):
                pause()
                sent = time.time()
                task_id = app.send_task(BARE_TASK, queue=BARE_QUEUE).id
                published = time.time()
                popped = results.blpop([STARTED_KEY], timeout=30)
                if popped is None:
                    raise TimeoutError(f"bare task {task_id} did not start in 30s")
                got_id, started = popped[1].decode().split()
                assert got_id == task_id, (got_id, task_id)
                if i >= WARMUP:
                    legs["total"].append(float(started) - sent)
                    legs["publish"].append(published - sent)
        finally:
            app.close()
            results.close()
    return legs


def ms(xs: list[float]) -> tuple[object, object]:
    if not xs:
        return "n/a", "n/a"
    return median(xs) * 1000, p99(xs) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 jobs per broker")
    parser.add_argument("--jobs", type=int, default=None, help="measured jobs per broker (150)")
    args = parser.parse_args()
    jobs = args.jobs or (8 if args.quick else 150)
    os.chdir(ROOT)
    random.seed(0)
    began = time.monotonic()

    walls: dict[str, float] = {}
    began_phase = time.monotonic()
    bare = run_bare(jobs)
    walls["bare"] = time.monotonic() - began_phase
    results = {}
    for broker in ("redis", "filesystem"):
        began_phase = time.monotonic()
        results[broker] = run_traindock(broker, jobs)
        walls[broker] = time.monotonic() - began_phase

    floor = median(bare["total"])
    rows: list[list[object]] = [["bare Celery, Redis (floor)", *ms(bare["total"]), 1.0,
                                 "n/a", "publish " + "/".join(f"{v:.1f}" for v in
                                                              ms(bare["publish"]))]]
    for broker, legs in results.items():
        rows.append([f"traindock, {broker}", *ms(legs["total"]), median(legs["total"]) / floor,
                     "/".join(f"{v:.1f}" for v in ms(legs["http"])), ""])
    print(header(f"Queue latency: submit to running, idle worker ({jobs} jobs each)"))
    print(table(["path", "p50 ms", "p99 ms", "p50 / floor", "POST 201 p50/p99 ms", "note"],
                rows, fmt=".1f"))
    print()
    print("Breakdown, ms (p50 / p99): submit -> row inserted; inserted -> worker received the "
          "task (commit, publish, delivery); received -> claimed.")
    print()
    breakdown = [[broker, *("/".join(f"{v:.1f}" if isinstance(v, float) else str(v)
                                     for v in ms(legs[k]))
                            for k in ("to_insert", "to_receive", "to_claim", "total"))]
                 for broker, legs in results.items()]
    print(table(["broker", "submit->insert", "insert->received", "received->claimed", "total"],
                breakdown))
    redis_p50 = median(results["redis"]["total"]) * 1000
    verdict = "met" if redis_p50 < 50 else f"missed by {redis_p50 - 50:.1f} ms"
    print(f"\nTarget p50 < 50 ms on Redis: {redis_p50:.1f} ms, {verdict}. "
          f"(run took {time.monotonic() - began:.0f} s: "
          + ", ".join(f"{name} {wall:.0f} s" for name, wall in walls.items()) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
