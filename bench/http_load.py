"""HTTP throughput: `POST /v1/jobs`, `GET /v1/jobs/{id}` and `GET /healthz` (the floor) at 64
concurrent clients, against the API as docker compose runs it (`traindock api`, Redis broker,
PostgreSQL), with uvicorn `--workers 1` (the default, which compose and `up` use) and 2.

The load comes from wrk (Debian's `wrk`) with 64 connections on 2 threads; without wrk, from
an asyncio httpx pool (slower: on 2 cores the Python client then takes CPU from the server).
Each cell is the median over repeats of a timed run after a warm-up run; the client shares
the 2 cores with the server, as a load balancer or clients on the same host would. No worker
runs: submitted jobs stay queued in a database of the run's own, dropped at the end. GET is
also measured at 8 clients, below the API's 15 database connections: at 64 it stalled until
requests stopped holding a connection while they waited for a thread (api/deps.py valid_job).
POST is measured twice: with the example job every time (the API has validated its layers
before, as in a sweep over hyperparameters), and with a hidden layer of a new width in each
submission (every network new: the whole shape pass on the meta device).

    python bench/http_load.py            # 2 s warm-up + 3 x 5 s per cell, about 3 minutes
    python bench/http_load.py --quick    # 2 s runs, to prove it works
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from report import header, median, p99, table
from stack import Stack

ROOT = Path(__file__).resolve().parent.parent
NAN = float("nan")
CONNECTIONS = 64
# Fewer clients than the API's 15 database connections, to read GET's throughput where the
# 64-client run stalls.
FEW = 8
TARGETS = {"POST /v1/jobs": 1000.0, "GET /v1/jobs/{id}": 3000.0}
BENCH_LINE = re.compile(r"BENCH requests=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+) "
                        r"errors=(\d+)")


def run_wrk(url: str, script: str, seconds: float, connections: int
            ) -> tuple[float, float, float, int]:
    """req/s, p50 ms, p99 ms, errors (socket errors and non-2xx answers)."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
         "-s", script, url],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    found = BENCH_LINE.search(out)
    if not found:
        raise RuntimeError(f"no report line in wrk's output:\n{out}")
    requests, duration_us, p50_us, p99_us, errors = map(int, found.groups())
    if requests == 0:  # wrk reports 0 for the percentiles of nothing
        return 0.0, NAN, NAN, errors
    return requests / (duration_us / 1e6), p50_us / 1000, p99_us / 1000, errors


def _bodies(post: str | None) -> Iterator[bytes | None]:
    """What each request sends: nothing (GET), the example job, or the example job with a
    hidden layer of a new width each time (a network the API has not validated before)."""
    template = (ROOT / "examples" / "digits-mlp.json").read_text()
    if post is None:
        yield from itertools.repeat(None)
    elif post == "same":
        yield from itertools.repeat(template.encode())
    else:
        for width in itertools.count(random.randrange(1_000, 900_000)):  # as the .lua
            yield template.replace('"out_features": 128', f'"out_features": {width}', 1).encode()


async def _httpx_load(url: str, post: str | None, seconds: float, connections: int
                      ) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections)
    bodies = _bodies(post)

    async def client_loop(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            began = time.perf_counter()
            body = next(bodies)
            if body is None:
                response = await http.get(url)
            else:
                response = await http.post(url, content=body,
                                           headers={"content-type": "application/json"})
            latencies.append(time.perf_counter() - began)
            errors += response.status_code >= 400

    began = time.monotonic()
    async with httpx.AsyncClient(limits=limits, timeout=10) as http:
        await asyncio.gather(*(client_loop(http) for _ in range(connections)))
    elapsed = time.monotonic() - began
    if not latencies:
        return 0.0, NAN, NAN, errors
    return len(latencies) / elapsed, median(latencies) * 1000, p99(latencies) * 1000, errors


def load(url: str, post: str | None, seconds: float, connections: int
         ) -> tuple[float, float, float, int]:
    """post: None (GET), "same" (the example job every time) or "varied" (a new network
    each time)."""
    if shutil.which("wrk"):
        script = {None: "bench/wrk_report.lua", "same": "bench/post_job.lua",
                  "varied": "bench/post_job_varied.lua"}[post]
        return run_wrk(url, script, seconds, connections)
    return asyncio.run(_httpx_load(url, post, seconds, connections))


def measure(workers: int, warm_s: float, run_s: float, repeats: int
            ) -> dict[str, tuple[float, float, float, int]]:
    """Per cell: median req/s, p50 ms, p99 ms over `repeats`, and the errors summed."""
    results = {}
    with Stack(broker="redis") as stack:
        api = stack.start_api(workers=workers)
        # /healthz answers once one uvicorn worker is up; wait for all of them.
        deadline = time.monotonic() + 60
        while api.log().count("Application startup complete.") < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{workers} API workers not up in 60 s:\n{api.log()[-2000:]}")
            time.sleep(0.1)
        spec = json.loads((ROOT / "examples" / "digits-mlp.json").read_text())
        job_id = httpx.post(f"{stack.api_url}/v1/jobs", json=spec, timeout=30).json()["id"]
        # GET at 64 last: it can stall the API for the pool's 30 s timeout (see the note
        # printed below), which must not spill into the other cells.
        for name, path, post, connections in (
            ("GET /healthz", "/healthz", None, CONNECTIONS),
            ("POST /v1/jobs", "/v1/jobs", "same", CONNECTIONS),
            ("POST /v1/jobs, a new network each", "/v1/jobs", "varied", CONNECTIONS),
            ("GET /v1/jobs/{id}", f"/v1/jobs/{job_id}", None, FEW),
            ("GET /v1/jobs/{id}", f"/v1/jobs/{job_id}", None, CONNECTIONS),
        ):
            url = stack.api_url + path
            load(url, post, warm_s, connections)
            runs = [load(url, post, run_s, connections) for _ in range(repeats)]
            results[f"{name} @{connections}"] = (
                median([r[0] for r in runs]), median([r[1] for r in runs]),
                median([r[2] for r in runs]), sum(r[3] for r in runs))
        # A stalled API would wait out its requests (the pool's 30 s) before it exits.
        api.stop(timeout=3)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s runs, one repeat")
    args = parser.parse_args()
    warm_s, run_s, repeats = (1.0, 2.0, 1) if args.quick else (2.0, 5.0, 3)
    os.chdir(ROOT)
    began = time.monotonic()
    by_workers = {workers: measure(workers, warm_s, run_s, repeats) for workers in (1, 2)}

    client = "wrk -t2" if shutil.which("wrk") else "an httpx asyncio pool"
    print(header(f"HTTP: concurrent clients ({client}), median of {repeats} x "
                 f"{run_s:.0f} s after a {warm_s:.0f} s warm-up"))
    rows: list[list[object]] = []
    for workers, results in by_workers.items():
        floor = results[f"GET /healthz @{CONNECTIONS}"][0]
        for cell, (rps, p50, p99_ms, errors) in results.items():
            target = TARGETS.get(cell.split(" @")[0].split(",")[0])
            base = by_workers[1][cell][0]
            rows.append([f"--workers {workers}" + (" (default)" if workers == 1 else ""), cell,
                         rps, p50, p99_ms, rps / floor if floor else NAN,
                         rps / target if target else NAN, rps / base if base else NAN, errors,
                         "stalled: no answer in the run" if rps == 0 else ""])
    print(table(["API", "endpoint @clients", "req/s", "p50 ms", "p99 ms", "/ healthz",
                 "/ target", "/ workers 1", "errors", "note"], rows, fmt=".2f"))
    print(f"\nTargets: POST {TARGETS['POST /v1/jobs']:.0f}/s, GET "
          f"{TARGETS['GET /v1/jobs/{id}']:.0f}/s. (run took {time.monotonic() - began:.0f} s)")
    print("A GET at 64 clients far below the one at 8 (with errors, or p99 near 30 s) is the "
          "stall: requests that hold a pooled\nconnection across thread-pool hops wait for "
          "threads held by requests waiting for a connection.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
