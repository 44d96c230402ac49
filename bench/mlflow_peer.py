"""Metrics against MLflow's tracking server on the same PostgreSQL: the same points ingested
with 1, 8 and 32 concurrent writers, and the same history read back. Issue 7, "Metrics".

traindock's writers are what its training children are: processes writing to PostgreSQL
(bench/metrics_ingest.py). MLflow's are what its users run: MlflowClient.log_batch, 1,000
metrics per call, to `mlflow server` (its own database, its default worker count). MLflow
has no downsampling, so its full history read stands beside traindock's full CSV export of
the same points and its downsampled read.

MLflow lives in a benchmark-only venv outside the repository (bench/setup_mlflow.sh; path
from --mlflow-venv or MLFLOW_VENV, default /tmp/traindock-mlflow-venv), and its client runs
there too, as bench/mlflow_side.py, whose JSON this script collects.

    bash bench/setup_mlflow.sh
    python bench/mlflow_peer.py            # full size, alone on the machine (~3 min)
    python bench/mlflow_peer.py --quick    # tiny sizes: proves the script works
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx
import metrics_ingest as ours
import psycopg
from report import header, median, p99, table
from stack import PG_ADMIN_URL, Stack, create_database, drop_database, free_port

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = os.environ.get("MLFLOW_VENV", "/tmp/traindock-mlflow-venv")


class MlflowServer:
    """`mlflow server` on a database of its own, in a process group of its own."""

    def __init__(self, venv: Path, workers: int) -> None:
        self.name = f"bench_mlflow_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base, _, _ = PG_ADMIN_URL.rpartition("/")
        self.backend_uri = f"{base}/{self.name}"
        # Named, since SQLAlchemy 2.1 takes a bare postgresql:// to mean psycopg 3.
        self.store_uri = self.backend_uri.replace("postgresql://", "postgresql+psycopg2://", 1)
        self.dir = Path(tempfile.mkdtemp(prefix="traindock-bench-mlflow-"))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = self.dir / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "mlflow"), "server", "--backend-store-uri", self.store_uri,
             "--default-artifact-root", (self.dir / "artifacts").as_uri(),
             "--no-serve-artifacts", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(workers)],
            cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        # The first start creates MLflow's schema (its Alembic migrations): tens of seconds.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"mlflow server not ready:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self._log.close()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def run_mlflow(venv: Path, workers: int, points: int, writer_counts: str, repeats: int,
               steps: int, read_repeats: int) -> dict:
    server = MlflowServer(venv, workers)
    try:
        t0 = time.monotonic()
        server.wait_ready()
        print(f"- mlflow server ready in {time.monotonic() - t0:.1f} s (creating its schema)")
        # In a process group of its own, so that an interrupted run can kill its forked
        # writers too, not only the process it started.
        side = subprocess.Popen(
            [str(venv / "bin" / "python"), str(HERE / "mlflow_side.py"), "--tracking-uri",
             server.url, "--backend-uri", server.backend_uri, "--points", str(points),
             "--writers", writer_counts, "--repeats", str(repeats), "--steps", str(steps),
             "--read-repeats", str(read_repeats)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        try:
            stdout, stderr = side.communicate(timeout=1800)
        finally:
            if side.poll() is None:
                os.killpg(side.pid, signal.SIGKILL)
                side.wait()
        if side.returncode:
            raise RuntimeError(f"mlflow_side.py failed:\n{stderr[-3000:]}")
        return json.loads(stdout.strip().splitlines()[-1])
    finally:
        server.stop()


def ours_reads(stack: Stack, job_id: uuid.UUID, steps: int, max_points: int,
               repeats: int) -> dict[str, ours.Timing]:
    """The full CSV export and the downsampled read, both over HTTP, after VACUUM ANALYZE."""
    ours.vacuum_analyze(stack.database_url)
    with httpx.Client(base_url=stack.api_url, timeout=300) as client:
        def csv_call() -> int:
            response = client.get(f"/v1/jobs/{job_id}/metrics.csv", params={"names": ours.SERIES})
            response.raise_for_status()
            rows = response.content.count(b"\n") - 1  # less the header
            assert rows == steps, f"{rows} rows, not {steps}"
            return rows

        return {"HTTP GET /metrics.csv (every point)": ours.time_calls(csv_call, repeats, 1),
                f"HTTP GET /metrics?max_points={max_points}":
                    ours.time_calls(ours.http_read(client, job_id, max_points), repeats, 1)}


def ingest_rows(mine: Sequence[ours.IngestResult], theirs: Sequence[dict] | None) -> list:
    rows = []
    for i, result in enumerate(mine):
        rate = median(result.points_per_s)
        their = median(theirs[i]["points_per_s"]) if theirs else float("nan")
        rows.append([result.writers, f"{rate:,.0f}", f"{their:,.0f}" if theirs else "n/a",
                     rate / their, median(result.flush_s) * 1e3,
                     median(theirs[i]["call_s"]) * 1e3 if theirs else float("nan")])
    return rows


def read_rows(mine: dict[str, ours.Timing], theirs: dict | None) -> list:
    their_full = median(theirs["client get_metric_history"]["repeat_s"]) if theirs else None
    rows = []
    for what, timing in mine.items():
        ms = median(timing.repeat_s) * 1e3
        rows.append([f"traindock {what}", ms, p99(timing.repeat_s) * 1e3,
                     ms / (their_full * 1e3) if their_full else float("nan")])
    for what, timing in (theirs or {}).items():
        ms = median(timing["repeat_s"]) * 1e3
        rows.append([f"MLflow {what} (every point)", ms, p99(timing["repeat_s"]) * 1e3,
                     ms / (their_full * 1e3)])
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, well under a minute")
    parser.add_argument("--points", type=int, help="points per ingest round, over all writers")
    parser.add_argument("--writers", default="1,8,32")
    parser.add_argument("--repeats", type=int, help="timed ingest rounds after a warm-up")
    parser.add_argument("--steps", type=int, help="points in the history read back")
    parser.add_argument("--max-points", type=int, default=1000)
    parser.add_argument("--mlflow-venv", default=DEFAULT_VENV)
    parser.add_argument("--mlflow-workers", type=int, default=4, help="MLflow's default: 4")
    args = parser.parse_args(argv)
    # On 2 cores MLflow ingests 2,000-7,000 points/s and returns a history at about 12,000
    # points/s, and its server takes 10-30 s to create its schema: these sizes keep the full
    # run near 3 minutes. bench/metrics_ingest.py reads traindock's million-point series.
    points = args.points or (10_000 if args.quick else 40_000)
    repeats = args.repeats or (1 if args.quick else 2)
    steps = args.steps or (5_000 if args.quick else 30_000)
    read_repeats = 3 if args.quick else 5
    writers = [int(w) for w in args.writers.split(",")]
    venv = Path(args.mlflow_venv)

    print(header("Metrics: traindock against MLflow's tracking server"))
    theirs = None
    if (venv / "bin" / "mlflow").exists():
        theirs = run_mlflow(venv, args.mlflow_workers, points, args.writers, repeats, steps,
                            read_repeats)
        print(f"- MLflow {theirs['mlflow_version']} (`mlflow server`, {args.mlflow_workers} "
              f"workers, PostgreSQL backend store), from {venv}\n")
    else:
        print(f"MLflow is not installed in {venv} (run bench/setup_mlflow.sh): "
              "traindock's side only.\n")

    name, url = create_database("bench_peer")
    try:
        mine = [ours.measure_ingest(url, n, points, 5000, repeats) for n in writers]
    finally:
        drop_database(name)
    with Stack() as stack:
        job_id = ours.load_series(stack.database_url, steps)
        stack.start_api()
        mine_reads = ours_reads(stack, job_id, steps, args.max_points, read_repeats)

    print(f"Ingest: {points:,} points per round (train_loss_step and lr per step) over N "
          f"writers, each its own job / run; 1 warm-up round then {repeats} timed, both "
          "metric tables emptied before each. traindock: processes writing to PostgreSQL in "
          "flushes of 5,000 points, as its training children do; MLflow: processes calling "
          "log_batch with 1,000 metrics per call.\n")
    print(table(["writers", "traindock points/s", "MLflow points/s", "traindock / MLflow",
                 "traindock ms per 5,000-point flush", "MLflow ms per 1,000-point call"],
                ingest_rows(mine, theirs["ingest"] if theirs else None)))
    print(f"\nRead: a {steps:,}-point train_loss_step series, median of {read_repeats} after "
          "a warm-up, after VACUUM ANALYZE. MLflow has no downsampling: its reads return "
          "every point. Ratio: against MLflow's client get_metric_history.\n")
    print(table(["read", "median ms", "p99 ms", "vs MLflow get_metric_history"],
                read_rows(mine_reads, theirs["reads"] if theirs else None)))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    main()
