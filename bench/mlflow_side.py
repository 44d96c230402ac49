"""The MLflow half of bench/mlflow_peer.py. It runs with the benchmark-only MLflow venv's
interpreter (bench/setup_mlflow.sh), imports nothing of traindock's, and prints one JSON
object on its last line of output.

It logs the points bench/metrics_ingest.py writes (per step a train_loss_step and an lr)
with MlflowClient.log_batch, 1,000 metrics per call (the server's limit), from 1, 8 and 32
writer processes (one run each), and then reads a run's train_loss_step history back.

    $MLFLOW_VENV/bin/python bench/mlflow_side.py --tracking-uri http://127.0.0.1:PORT \
        --backend-uri postgresql://... --points 20000 --writers 1,8,32 --repeats 2 --steps 10000
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Sequence

SERIES = "train_loss_step"
BATCH_LIMIT = 1000  # metrics per log_batch call: MLflow refuses more


def make_metrics(n: int, step_offset: int = 0, names: Sequence[str] = (SERIES, "lr")) -> list:
    """n points, the same values traindock's side writes, as MLflow Metric entities."""
    from mlflow.entities import Metric

    now_ms = int(time.time() * 1000)
    out = []
    for i in range(n):
        step, which = divmod(i, len(names))
        step += step_offset
        name = names[which]
        value = 2.0 / (1 + step * 1e-3) if name == SERIES else 1e-3
        out.append(Metric(name, value, now_ms, step))
    return out


def rest(uri: str, path: str, body: dict) -> dict:
    """One call with a session of its own: the parent process must not hold MLflow's cached
    HTTP session when it forks writers (they would share its sockets)."""
    import requests

    with requests.Session() as session:
        response = session.post(f"{uri}/api/2.0/mlflow/{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()


def create_run(uri: str, experiment_id: str) -> str:
    body = {"experiment_id": experiment_id, "start_time": int(time.time() * 1000)}
    return rest(uri, "runs/create", body)["run"]["info"]["run_id"]


def _writer(uri: str, experiment_id: str, n_points: int, rounds: int, barrier, results) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    metrics = make_metrics(n_points)
    batches = [metrics[i:i + BATCH_LIMIT] for i in range(0, len(metrics), BATCH_LIMIT)]
    for _ in range(rounds):
        run_id = create_run(uri, experiment_id)  # a fresh run per round, untimed
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # the parent gave up (Ctrl-C or a failure)
            return
        call_s = []
        started = time.monotonic()
        for chunk in batches:
            t0 = time.perf_counter()
            client.log_batch(run_id, metrics=chunk)
            call_s.append(time.perf_counter() - t0)
        results.put({"started": started, "ended": time.monotonic(), "rows": n_points,
                     "call_s": call_s, "run_id": run_id})


def truncate_metrics(backend_uri: str) -> None:
    """Empty MLflow's metric tables between rounds, as traindock's side empties its own: every
    round then writes into the same (empty) table."""
    import psycopg2

    conn = psycopg2.connect(backend_uri)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("TRUNCATE metrics, latest_metrics")
    finally:
        conn.close()


def stored_points(backend_uri: str) -> int:
    import psycopg2

    conn = psycopg2.connect(backend_uri)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM metrics")
            return cur.fetchone()[0]
    finally:
        conn.close()


def measure_ingest(uri: str, backend_uri: str, experiment_id: str, writers: int,
                   total_points: int, repeats: int) -> dict:
    per_writer = total_points // writers
    # Forked from a parent that has imported mlflow: starting 32 fresh interpreters that each
    # import it costs more CPU than the measurement on 2 cores.
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(writers + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_writer, daemon=True,
                         args=(uri, experiment_id, per_writer, repeats + 1, barrier, results))
             for _ in range(writers)]
    for proc in procs:
        proc.start()
    rates, calls = [], []
    try:
        for round_no in range(repeats + 1):
            truncate_metrics(backend_uri)
            barrier.wait(timeout=300)
            done = [results.get(timeout=900) for _ in range(writers)]
            stored = stored_points(backend_uri)
            assert stored == per_writer * writers, f"{stored} points stored"
            if round_no:  # round 0 is the warm-up
                span = max(r["ended"] for r in done) - min(r["started"] for r in done)
                rates.append(per_writer * writers / span)
                calls += [c for r in done for c in r["call_s"]]
    finally:
        barrier.abort()  # writers still waiting for a round exit at once (see metrics_ingest)
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
    return {"writers": writers, "points_per_s": rates, "call_s": calls}


def _load_slice(uri: str, run_id: str, first: int, n: int) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    metrics = make_metrics(n, first, names=(SERIES,))
    for i in range(0, n, BATCH_LIMIT):
        client.log_batch(run_id, metrics=metrics[i:i + BATCH_LIMIT])


def load_history(uri: str, experiment_id: str, steps: int, loaders: int = 4) -> str:
    """A run holding `steps` points of train_loss_step, logged by a few processes at once
    (untimed: its ingest is measured above)."""
    run_id = create_run(uri, experiment_id)
    share = math.ceil(steps / loaders)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_load_slice,
                         args=(uri, run_id, first, min(share, steps - first)))
             for first in range(0, steps, share)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
        assert proc.exitcode == 0, "a loader failed"
    return run_id


def time_calls(call: Callable[[], int], expected: int, repeats: int) -> dict:
    t0 = time.perf_counter()
    assert call() == expected
    first = time.perf_counter() - t0
    call()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = call()
        times.append(time.perf_counter() - t0)
        assert n == expected, f"{n} points, not {expected}"
    return {"first_s": first, "repeat_s": times}


def measure_reads(uri: str, run_id: str, steps: int, repeats: int) -> dict:
    import requests
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    session = requests.Session()

    def client_call() -> int:
        return len(client.get_metric_history(run_id, SERIES))

    def rest_call() -> int:
        response = session.get(f"{uri}/api/2.0/mlflow/metrics/get-history",
                               params={"run_id": run_id, "metric_key": SERIES})
        response.raise_for_status()
        body = response.json()
        assert not body.get("next_page_token"), "history came back paged"
        return len(body["metrics"])

    return {"client get_metric_history": time_calls(client_call, steps, repeats),
            "REST get-history": time_calls(rest_call, steps, repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description="MLflow's side of bench/mlflow_peer.py")
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--backend-uri", required=True, help="MLflow's database (psycopg2 URL)")
    parser.add_argument("--points", type=int, required=True)
    parser.add_argument("--writers", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, required=True, help="points in the history read")
    parser.add_argument("--read-repeats", type=int, default=5)
    args = parser.parse_args()
    import mlflow
    import mlflow.tracking  # noqa: F401 - imported once here, inherited by every forked writer

    experiment_id = rest(args.tracking_uri, "experiments/create",
                         {"name": f"bench-{os.getpid()}"})["experiment_id"]
    ingest = [measure_ingest(args.tracking_uri, args.backend_uri, experiment_id, int(n),
                             args.points, args.repeats) for n in args.writers.split(",")]
    run_id = load_history(args.tracking_uri, experiment_id, args.steps)
    reads = measure_reads(args.tracking_uri, run_id, args.steps, args.read_repeats)
    print(json.dumps({"mlflow_version": mlflow.__version__, "ingest": ingest, "reads": reads}))


if __name__ == "__main__":
    main()
