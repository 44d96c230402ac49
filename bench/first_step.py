"""Submit to first training step (issue 13, finding 8): a cold training child against a warm
one, side by side in one run.

Two private stacks (bench/stack.py: each its own PostgreSQL database, redis-server, API and
worker), one with TRAINDOCK_WARM_CHILD=false (a fresh interpreter per job), one with the
default (a training process started ahead). Each round submits examples/digits-mlp.json to
the cold stack, waits for it to finish, then to the warm one; every job goes to an idle
worker, with the warm stack's next process ready, so neither stack's jobs share the CPU with
the other's start-up. After one warm-up job per stack, --jobs rounds are timed.

Submit to first step: the client's time.time() just before POST /v1/jobs, to the job's
`startup.first_step_at`, which the training child stamps with time.time() when the
optimizer's first step returns (worker/startup.py). One clock on one host; the first step is
the end of the first training step itself, not its first metric point (which is logged at
that step here, but only every few steps in a long epoch). The start-up columns are the
medians of the stored breakdown.

    python bench/first_step.py            # 20 rounds (about 5 minutes on 2 cores)
    python bench/first_step.py --quick    # 3 rounds, a smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import header, median, table  # noqa: E402
from bench.stack import Stack  # noqa: E402
from bench.train_overhead import IdleWorker  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.05
TARGET_WARM_P50_S = 1.0
PHASES = ("interpreter_s", "imports_s", "job_s", "data_s", "model_s", "optimizer_s",
          "resume_s", "first_step_s")


def p95(xs: list[float]) -> float:
    """Nearest rank: of 20 values, the 19th smallest."""
    ordered = sorted(xs)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def run_job(client: httpx.Client, spec: dict) -> dict:
    """Submit, wait for the end; the job's start-up and the seconds from submit to its first
    step."""
    submitted = time.time()
    response = client.post("/v1/jobs", json=spec)
    response.raise_for_status()
    job_id = response.json()["id"]
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled", "pruned"):
            break
        time.sleep(POLL_S)
    if job["state"] != "succeeded":
        raise RuntimeError(f"job {job_id} {job['state']}: {job.get('error')}")
    startup = job["startup"]
    first_step = datetime.fromisoformat(startup["first_step_at"]).timestamp()
    return {**startup, "submit_to_first_step_s": first_step - submitted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="timed jobs per mode")
    parser.add_argument("--quick", action="store_true", help="3 jobs per mode (a smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.jobs = 3
    spec = json.loads((ROOT / "examples" / "digits-mlp.json").read_text())
    results: dict[str, list[dict]] = {"cold": [], "warm": []}
    with (Stack(extra_env={"TRAINDOCK_WARM_CHILD": "false"}) as cold_stack,
          Stack(extra_env={"TRAINDOCK_WARM_CHILD": "true"}) as warm_stack):
        clients = {}
        for mode, stack in (("cold", cold_stack), ("warm", warm_stack)):
            stack.start_api()
            stack.start_worker()
            clients[mode] = httpx.Client(base_url=stack.api_url or "", timeout=30)
        warm_idle = IdleWorker(warm_stack, warm=True)
        try:
            for round_ in range(args.jobs + 1):  # round 0 warms up: pools, the file cache
                warm_idle.wait()
                for mode in ("cold", "warm"):
                    result = run_job(clients[mode], spec)
                    if round_:
                        results[mode].append(result)
                print(f"round {round_}/{args.jobs}: cold "
                      f"{results['cold'][-1]['submit_to_first_step_s'] if round_ else 0:.2f} s,"
                      f" warm {results['warm'][-1]['submit_to_first_step_s'] if round_ else 0:.2f}"
                      " s", file=sys.stderr)
        finally:
            for client in clients.values():
                client.close()

    rows = []
    for mode, runs in results.items():
        first = [r["submit_to_first_step_s"] for r in runs]
        target = "-" if mode == "cold" else (
            "met" if median(first) <= TARGET_WARM_P50_S else "MISSED")
        rows.append([mode, len(runs), median(first), p95(first),
                     median([r["queue_s"] for r in runs]),
                     median([r["total_s"] for r in runs]),
                     *[median([r[p] for r in runs]) for p in PHASES], target])
    print(header("Submit to first training step: cold and warm training process"))
    print(table(["child", "jobs", "submit→first step p50 (s)", "p95 (s)", "queue p50",
                 "start-up p50", *[p.removesuffix("_s") for p in PHASES],
                 f"target p50 ≤ {TARGET_WARM_P50_S} s warm"], rows, fmt=".3f"))
    print(f"\nexamples/digits-mlp.json, {args.jobs} jobs per mode after one warm-up job each, "
          "one at a time, each to an idle worker. Submit to first step: the client's clock "
          "before POST to the job's startup.first_step_at (the end of the optimizer's first "
          "step). Phase columns: medians of the stored start-up breakdown (GET /v1/jobs/{id} "
          "`startup`); queue = submit to claim.")


if __name__ == "__main__":
    main()
