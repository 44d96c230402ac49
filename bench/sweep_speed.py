"""Small trials fast (issue 17): a sweep of small digits jobs through traindock against the
same trials run in one process with Optuna over the bare PyTorch loop, side by side in one run.

(a) traindock: a private stack (bench/stack.py: its own PostgreSQL database, redis-server,
API and --workers workers). Once every worker's warm training process is ready, a TPE sweep
of --trials trials over optimizer.lr (log range) and the hidden width is POSTed to
/v1/sweeps; timed from the client's clock before the POST to the last trial job's
finished_at (one host, one clock). Every trial must have succeeded with its metric points and
at least one checkpoint, read back over HTTP.

Rounds (--rounds, default 3): (a) then (b), again and again on the one stack, and the round
with the median ratio is shown in full: on a host shared with other work, the load moves
from one minute to the next, and a single round's two sides may not see the same.

(b) in-process: the parameter sets the sweep actually ran (read back from the API), enqueued
in that order in an Optuna study and run by `study.optimize` in this one process over
bench/bare_loop.py's loop: the same data cut (loaded once, as a careful engineer would), the
same network, optimizer, epochs, batch size, seed, a validation pass each epoch and a test pass
at the end. Timed from the study's creation to its last trial's end; torch is already
imported, so neither side pays an interpreter start-up inside its timing.

Where a trial's time goes on the traindock side (medians over the trials): queue (created to
claimed), start-up (claim to the end of the first step: hand-over, data, model, optimizer,
preflight), run (first step to the job's end: training, evaluation, checkpoints, metric
flushes, the child's exit and the supervisor's bookkeeping), and the driver's gap (a trial's
job created after the end of the job that made room for it).

    python bench/sweep_speed.py                 # 30 trials, 2 workers (a few minutes)
    python bench/sweep_speed.py --quick         # 6 trials, a smoke test
    python bench/sweep_speed.py --pg postgresql://postgres@127.0.0.1:5433/postgres
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import header, median, table  # noqa: E402

TARGET_RATIO = 1.5
POLL_S = 0.2
LR = "optimizer.lr"
WIDTH = "model.layers[1].out_features"


def base_spec(epochs: int, batch_size: int, checkpoint_every: int = 1) -> dict:
    return {
        "name": "bench-sweep-digits",
        "dataset": {"name": "digits", "val_fraction": 0.1},
        "model": {"init": "he_normal", "layers": [
            {"type": "flatten"}, {"type": "linear", "out_features": 64}, {"type": "relu"},
            {"type": "linear", "out_features": 10}]},
        "loss": {"type": "cross_entropy"},
        "optimizer": {"type": "adam", "lr": 0.001},
        "training": {"epochs": epochs, "batch_size": batch_size, "seed": 0,
                     "checkpoint_every_epochs": checkpoint_every},
        "resources": {"device": "cpu"},
    }


def sweep_spec(trials: int, parallelism: int, epochs: int, batch_size: int,
               checkpoint_every: int = 1) -> dict:
    return {
        "name": "bench-sweep",
        "base": base_spec(epochs, batch_size, checkpoint_every),
        "parameters": {LR: {"low": 0.0001, "high": 0.1, "log": True},
                       WIDTH: {"low": 16, "high": 256, "type": "int"}},
        "method": "tpe",
        "objective": {"metric": "val_loss", "mode": "min", "at": "best"},
        "budget": {"trials": trials},
        "parallelism": parallelism,
        "seed": 0,
    }


def _ts(value: str | None) -> float:
    return datetime.fromisoformat(value).timestamp() if value else math.nan


# ---- (a) through traindock -------------------------------------------------------------------

def warm_children_ready(stack, count: int, timeout: float = 120) -> None:
    """Wait until `count` warm training processes have said they are ready for a job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = sum(path.read_text(errors="replace").count("ready for a job")
                    for path in (stack.data_dir / "logs" / "warm").glob("*.log"))
        if ready >= count:
            return
        time.sleep(0.1)
    raise TimeoutError(f"fewer than {count} warm training processes ready after {timeout}s")


def run_sweep(client: httpx.Client, body: dict, timeout: float) -> tuple[float, dict]:
    """POST the sweep, wait for its end; (the client's time.time() before the POST, sweep)."""
    posted = time.time()
    response = client.post("/v1/sweeps", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"POST /v1/sweeps: {response.status_code} {response.text}")
    sweep_id = response.json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        sweep = client.get(f"/v1/sweeps/{sweep_id}").json()
        if sweep["state"] in ("succeeded", "failed", "cancelled"):
            return posted, sweep
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweep still {sweep['state']} after {timeout}s")
        time.sleep(POLL_S)


def trial_jobs(client: httpx.Client, sweep: dict) -> list[dict]:
    """Every trial's job as GET /v1/jobs/{id} answers it, with its params, after checking it
    kept what a job keeps: succeeded, its metric points, a checkpoint."""
    jobs = []
    for trial in sweep["trials"]:
        for ref in trial["jobs"]:
            job = client.get(f"/v1/jobs/{ref['id']}").json()
            problems = []
            if job["state"] != "succeeded":
                problems.append(f"state {job['state']}: {job.get('error')}")
            series = client.get(f"/v1/jobs/{ref['id']}/metrics",
                                params={"names": "train_loss,val_loss"}).json()["series"]
            if not all(series.get(name, {}).get("step") for name in ("train_loss", "val_loss")):
                problems.append(f"metric points missing: {sorted(series)}")
            if not client.get(f"/v1/jobs/{ref['id']}/checkpoints").json():
                problems.append("no checkpoint")
            if problems:
                raise RuntimeError(f"trial {trial['number']} job {ref['id']}: {problems}")
            jobs.append({**job, "params": trial["params"], "number": trial["number"],
                         "value": trial["value"]})
    return jobs


def driver_gaps(jobs: list[dict], posted: float) -> list[float]:
    """For each trial job created after the first ones: seconds from the end of the latest job
    that had ended before it was created (the one that made room) to its creation."""
    gaps = []
    ends = sorted(_ts(job["finished_at"]) for job in jobs)
    for job in jobs:
        created = _ts(job["created_at"])
        before = [end for end in ends if end <= created]
        if before and created - posted > 0.5:
            gaps.append(created - before[-1])
    return gaps


def through_traindock(args: argparse.Namespace, client: httpx.Client, round_: int) -> dict:
    body = sweep_spec(args.trials, args.parallelism or args.workers, args.epochs,
                      args.batch_size, args.checkpoint_every)
    body["name"] = f"bench-sweep-{round_ + 1}"
    posted, sweep = run_sweep(client, body, timeout=args.timeout)
    if sweep["state"] != "succeeded":
        raise RuntimeError(f"sweep {sweep['state']}: {sweep.get('error')}")
    jobs = trial_jobs(client, sweep)
    ended = max(_ts(job["finished_at"]) for job in jobs)
    if args.timeline:
        for job in sorted(jobs, key=lambda j: _ts(j["created_at"])):
            marks = [_ts(job[k]) - posted for k in ("created_at", "started_at")]
            marks += [_ts(job["startup"]["first_step_at"]) - posted,
                      _ts(job["finished_at"]) - posted]
            print(f"trial {job['number']:3d}: created {marks[0]:6.2f} claimed {marks[1]:6.2f} "
                  f"first step {marks[2]:6.2f} ended {marks[3]:6.2f}", file=sys.stderr)
    startup = [job["startup"] for job in jobs]
    first_steps = [_ts(s["first_step_at"]) for s in startup]
    return {
        "wall_s": ended - posted,
        "jobs": jobs,
        "queue_s": median([s["queue_s"] for s in startup]),
        "startup_s": median([s["total_s"] for s in startup]),
        "data_s": median([s["data_s"] for s in startup]),
        "imports_s": median([s["imports_s"] for s in startup]),
        "preflight_s": median([s.get("preflight_s") or 0.0 for s in startup]),
        "run_s": median([_ts(j["finished_at"]) - fs for j, fs in zip(jobs, first_steps,
                                                                     strict=True)]),
        "job_s": median([_ts(j["finished_at"]) - _ts(j["started_at"]) for j in jobs]),
        "gap_s": median(driver_gaps(jobs, posted) or [math.nan]),
        "warm": sum(bool(s["warm"]) for s in startup),
    }


# ---- (b) in one process, Optuna over the bare loop -------------------------------------------

def in_process(args: argparse.Namespace, params: list[dict]) -> dict:
    import numpy as np
    import optuna
    import torch
    from torch import nn

    from bench.bare_loop import build_optimizer, he, load_data, train

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)
    base = base_spec(args.epochs, args.batch_size)
    import sklearn.datasets  # noqa: F401 - imported before the clock, as torch is

    torch.manual_seed(0)
    started = time.perf_counter()
    data = load_data(base, torch.device("cpu"))  # once: every trial has the same cut
    n_inputs = int(np.prod(data["x_train"].shape[1:]))
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=0))
    for point in params:
        study.enqueue_trial({LR: point[LR], WIDTH: point[WIDTH]})
    trial_s: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        began = time.perf_counter()
        lr = trial.suggest_float(LR, 0.0001, 0.1, log=True)
        width = trial.suggest_int(WIDTH, 16, 256)
        spec = {**base, "optimizer": {"type": "adam", "lr": lr}}
        torch.manual_seed(spec["training"]["seed"])
        model = nn.Sequential(nn.Flatten(), he(nn.Linear(n_inputs, width), "relu"), nn.ReLU(),
                              he(nn.Linear(width, 10), "linear"))
        result = train(spec, model, build_optimizer(spec, model), data)
        trial_s.append(time.perf_counter() - began)
        return result["val_loss"]

    study.optimize(objective, n_trials=len(params))
    return {"wall_s": time.perf_counter() - started, "trial_s": median(trial_s),
            "threads": torch.get_num_threads(), "best": study.best_value}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--parallelism", type=int, default=0,
                        help="the sweep's parallelism (default: --workers)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--checkpoint-every", type=int, default=1,
                        help="the trials' training.checkpoint_every_epochs (1, the default: "
                        "every epoch; 0: only the final checkpoint)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the one-process run (default 1, as each of "
                        "traindock's training processes on 2 cores; 2 is slower on a shared "
                        "machine)")
    parser.add_argument("--warm-child-jobs", type=int, default=50,
                        help="TRAINDOCK_WARM_CHILD_JOBS for the workers (1: a process per job)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--pg", default=os.environ.get("TRAINDOCK_BENCH_PG"),
                        help="PostgreSQL admin URL (default: TRAINDOCK_BENCH_PG, else "
                        "postgresql://postgres@127.0.0.1:5432/postgres)")
    parser.add_argument("--redis", default=os.environ.get("TRAINDOCK_BENCH_REDIS"),
                        help="an existing Redis to use as the broker, e.g. "
                        "redis://127.0.0.1:6380/5 (default: a private redis-server)")
    parser.add_argument("--timeline", action="store_true",
                        help="print each trial's created, claimed, first step, ended")
    parser.add_argument("--keep", action="store_true", help="keep the stack's DATA_DIR (logs)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of (a) then (b) on the one stack; the median round's ratio "
                        "is reported (a shared host's load moves from minute to minute)")
    parser.add_argument("--quick", action="store_true", help="6 trials, a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.rounds = 6, 1

    from bench.stack import Stack

    rounds: list[tuple[dict, dict]] = []
    extra_env = {"TRAINDOCK_WARM_CHILD_JOBS": str(args.warm_child_jobs)}
    with Stack(extra_env=extra_env, pg_admin_url=args.pg, redis_url=args.redis,
               keep=args.keep) as stack:
        if args.keep:
            print(f"logs under {stack.data_dir}", file=sys.stderr)
        stack.start_api()
        for n in range(args.workers):
            stack.start_worker(f"w{n + 1}")
        warm_children_ready(stack, args.workers)
        with httpx.Client(base_url=stack.api_url or "", timeout=60) as client:
            for round_ in range(args.rounds):
                print(f"round {round_ + 1}/{args.rounds}: (a) {args.trials} trials through "
                      f"traindock, {args.workers} workers ...", file=sys.stderr)
                ours = through_traindock(args, client, round_)
                params = [job["params"] for job in sorted(ours["jobs"],
                                                          key=lambda j: j["number"])]
                print(f"round {round_ + 1}/{args.rounds}: (b) the same {len(params)} parameter "
                      "sets in one process ...", file=sys.stderr)
                bare = in_process(args, params)
                print(f"round {round_ + 1}: {ours['wall_s']:.1f} s against {bare['wall_s']:.1f}"
                      f" s, {ours['wall_s'] / bare['wall_s']:.2f}x", file=sys.stderr)
                rounds.append((ours, bare))
    # The round with the median ratio is the one shown in full.
    ours, bare = sorted(rounds, key=lambda r: r[0]["wall_s"] / r[1]["wall_s"])[len(rounds) // 2]
    params = [job["params"] for job in ours["jobs"]]
    ratio = ours["wall_s"] / bare["wall_s"]
    print(header(f"A {args.trials}-trial sweep of small digits jobs: traindock against one "
                 "process"))
    if args.rounds > 1:
        print(table(["round", "traindock (s)", "one process (s)", "ratio"],
                    [[n + 1, o["wall_s"], b["wall_s"], o["wall_s"] / b["wall_s"]]
                     for n, (o, b) in enumerate(rounds)]))
        print("\nThe round with the median ratio, in full:\n")
    print(table(
        ["run", "trials", "wall (s)", "per trial (s)", "ratio", f"target ≤ {TARGET_RATIO}x"],
        [[f"traindock, {args.workers} workers", len(ours["jobs"]), ours["wall_s"],
          ours["wall_s"] / len(ours["jobs"]), ratio,
          "met" if ratio <= TARGET_RATIO else "MISSED"],
         [f"one process, Optuna + bare loop ({bare['threads']} threads)", len(params),
          bare["wall_s"], bare["wall_s"] / len(params), 1.0, "-"]]))
    print()
    print(table(["traindock trial (medians, s)", "queue", "start-up", "of it: warm-up left",
                 "data", "preflight", "run (first step to end)", "claim to end", "driver gap",
                 "warm children"],
                [["", ours["queue_s"], ours["startup_s"], ours["imports_s"], ours["data_s"],
                  ours["preflight_s"], ours["run_s"],
                  ours["job_s"], ours["gap_s"], f"{ours['warm']}/{len(ours['jobs'])}"]]))
    print(f"\nOne in-process trial (median): {bare['trial_s']:.3f} s. Every traindock trial "
          "succeeded with its metric points and a checkpoint. Spec: digits MLP "
          f"(flatten, linear width, relu, linear 10), adam, {args.epochs} epochs, batch "
          f"{args.batch_size}, checkpoint_every_epochs {args.checkpoint_every}, "
          f"TPE over {LR} (1e-4..0.1, log) and {WIDTH} (16..256); "
          f"parallelism {args.parallelism or args.workers}, TRAINDOCK_WARM_CHILD_JOBS="
          f"{args.warm_child_jobs}. Traindock wall: the client's clock "
          "before POST /v1/sweeps to the last trial's finished_at; one process: the study's "
          "creation (data load included) to its last trial's end.")


if __name__ == "__main__":
    main()
