"""Memory (issue 7): resident memory of the API, of an idle worker, and of a training child per
job, beside the same job trained by bench/bare_loop.py in a process of its own.

RSS and peak are VmRSS and VmHWM from /proc/<pid>/status. A training child is found as the
worker's descendant running `worker.child` (psutil) and sampled every SAMPLE_S until it exits;
its peak is the last VmHWM read (the kernel's own high-water mark, so a spike between samples
still counts) and the bare loop's the same way.

    python bench/memory.py            # the full run (about a minute on 2 cores)
    python bench/memory.py --quick    # tiny sizes, a smoke test
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bare_loop  # noqa: E402
from bench.report import header, table  # noqa: E402
from bench.stack import Stack  # noqa: E402

SAMPLE_S = 0.02
# Memory does not grow with epochs (the data and the network are allocated once), so the long
# job trains two: its 200,000 samples are what this measures.
EPOCHS = {"mlp": None, "cnn": None, "long": 2}


def status_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB; NaN for a process that is gone."""
    values = {"VmRSS": float("nan"), "VmHWM": float("nan")}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key = line.split(":", 1)[0]
                if key in values:
                    values[key] = int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values["VmRSS"], values["VmHWM"]


def tree_rss_mib(pid: int) -> float:
    """A process and its descendants together (an API with several uvicorn workers)."""
    pids = [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    return sum(status_mib(p)[0] for p in pids)


def sample_until_exit(pid: int) -> tuple[float, float]:
    """(largest VmRSS seen, last VmHWM read) of a running process, until it exits."""
    max_rss = peak = float("nan")
    while True:
        rss, hwm = status_mib(pid)
        if rss != rss:  # NaN: gone
            return max_rss, peak
        max_rss = rss if max_rss != max_rss else max(max_rss, rss)
        # VmHWM is synced from per-thread counters lazily and can trail a VmRSS just read.
        peak = max(hwm, max_rss)
        time.sleep(SAMPLE_S)


def find_child(worker_pid: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.Process(worker_pid).children(recursive=True):
            try:
                if "worker.child" in proc.cmdline():
                    return proc.pid
            except psutil.Error:
                continue
        time.sleep(0.005)
    raise TimeoutError("no training child appeared under the worker")


def train_child(client: httpx.Client, worker_pid: int, spec: dict) -> tuple[float, float]:
    response = client.post("/v1/jobs", json=spec)
    response.raise_for_status()
    job_id = response.json()["id"]
    rss, peak = sample_until_exit(find_child(worker_pid))
    while (state := client.get(f"/v1/jobs/{job_id}").json()["state"]) not in (
            "succeeded", "failed", "cancelled", "pruned"):
        time.sleep(0.05)
    if state != "succeeded":
        raise RuntimeError(f"job {job_id} {state}")
    return rss, peak


def bare_process(job: str, quick: bool) -> tuple[float, float]:
    epochs = EPOCHS[job] if not quick else None
    args = [sys.executable, str(Path(bare_loop.__file__)), "--job", job]
    args += ["--quick"] if quick else []
    args += ["--epochs", str(epochs)] if epochs else []
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    result = sample_until_exit(proc.pid)
    if proc.wait() != 0:
        raise RuntimeError(f"{args} failed")
    return result


def exercise_api(client: httpx.Client, spec: dict, n: int) -> None:
    """A few requests of each kind a dashboard or client sends."""
    for _ in range(n):
        client.post("/v1/jobs/validate", json=spec).raise_for_status()
        client.get("/v1/jobs").raise_for_status()
        client.get("/healthz").raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    args = parser.parse_args()
    rows: list[list[object]] = []

    def row(what: str, rss: float, peak: float, note: str = "") -> None:
        rows.append([what, rss, peak, note])

    # A cold child per job: the idle worker alone, and each job's own training process (a
    # warm one, the default, would be counted in the idle worker and found as the job's).
    with Stack(extra_env={"TRAINDOCK_WARM_CHILD": "false"}) as stack, \
            httpx.Client(timeout=30) as client:
        api = stack.start_api()
        worker = stack.start_worker()
        client.base_url = stack.api_url
        time.sleep(1.0)  # let start-up settle (lazy imports on the first request excluded)
        row("API, idle after start", *status_mib(api.pid),
            f"{len(psutil.Process(api.pid).children(recursive=True))} child processes")
        exercise_api(client, bare_loop.job_spec("mlp", True), 5 if args.quick else 50)
        row(f"API, after {15 if args.quick else 150} requests (validate, list, healthz)",
            *status_mib(api.pid))
        row("worker, idle after start", *status_mib(worker.pid),
            f"tree {tree_rss_mib(worker.pid):.1f} MiB")
        children = {}
        jobs = ["long"] if args.quick else list(bare_loop.JOBS)  # --quick: within a minute
        for job in jobs:
            spec = bare_loop.job_spec(job, args.quick, None if args.quick else EPOCHS[job])
            children[job] = train_child(client, worker.pid, spec)
        for job in jobs:
            bare = bare_process(job, args.quick)
            rss, peak = children[job]
            row(f"training child, {job}", rss, peak, f"peak {peak / bare[1]:.2f}x the bare loop's")
            row(f"bare_loop.py, {job} (own process)", *bare)
        exercise_api(client, bare_loop.job_spec("mlp", True), 5 if args.quick else 50)
        row("API, after the jobs and more requests", *status_mib(api.pid))
        row("worker, idle after the jobs", *status_mib(worker.pid))
    print(header("Memory" + (" (--quick: tiny sizes)" if args.quick else "")))
    print(table(["process", "RSS (MiB)", "peak RSS (MiB)", "note"], rows, fmt=".1f"))
    print(f"\nRSS: VmRSS; peak: VmHWM (for a training child, the last read before it exited; "
          f"sampled every {SAMPLE_S} s). Jobs: bench/bare_loop.py's JOBS"
          + (" at --quick sizes." if args.quick else f", epochs {EPOCHS}."))


if __name__ == "__main__":
    main()
