"""Training overhead (issue 7): traindock's loop and a whole job against bench/bare_loop.py.

For each job in bare_loop.JOBS (a digits MLP, a digits CNN, a long spirals MLP):
  (a) bare loop, in-process: bare_loop.run()'s training time / steps;
  (b) traindock's worker/train.py train(), in-process, with the real spec, prepare_data's data
      and callbacks: none; an in-memory metric sink (the cost of metric logging); that sink
      plus a checkpoint every epoch with checkpoint_state/write_atomically (the cost of
      checkpointing). Each variant: one warm-up run, then the median of --repeats runs.
  (c) end to end: POST /v1/jobs to a real API and worker, poll GET /v1/jobs/{id} every
      POLL_S until succeeded, against `python bench/bare_loop.py --job J` run as a subprocess
      (Python and torch start-up counted the same way). The job's created_at/started_at/
      finished_at split the time into queue, run and notice. Run twice: with a cold training
      child (TRAINDOCK_WARM_CHILD=false), and with the default warm one (started ahead);
      each job is submitted to an idle worker, in the warm run once its warm child is ready.
In-process rows of the long job run LONG_INPROCESS_EPOCHS epochs (per-step cost does not depend
on the epoch count); its end-to-end rows run the whole ~1-minute job.

    python bench/train_overhead.py            # the full run (about 4 minutes on 2 cores)
    python bench/train_overhead.py --quick    # tiny sizes, a smoke test
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bare_loop  # noqa: E402
from bench.report import header, median, table  # noqa: E402
from bench.stack import Stack  # noqa: E402
from core.jobspec import JobSpec  # noqa: E402
from models.build import build_model  # noqa: E402
from models.losses import build_loss  # noqa: E402
from worker.behind import Behind  # noqa: E402
from worker.checkpoints import (  # noqa: E402
    checkpoint_path,
    checkpoint_state,
    copied,
    write_atomically,
)
from worker.child import training_threads  # noqa: E402
from worker.data import prepare_data  # noqa: E402
from worker.optim import build_optimizer  # noqa: E402
from worker.state import LoopState, Point  # noqa: E402
from worker.train import plan_run, train  # noqa: E402

POLL_S = 0.05  # the client's polling interval: at most this much is added to a job's time
LONG_INPROCESS_EPOCHS = 2
LONG_INPROCESS_REPEATS = 3  # each run is 2,250 steps: enough for a stable median
TARGET_STEP_MS = 0.3
TARGET_E2E = 1.03


class ListSink:
    """Metric logging without a database: what the loop hands MetricSink, kept in a list."""

    def __init__(self) -> None:
        self.points: list[Point] = []

    def on_points(self, state: LoopState, points: list[Point]) -> None:
        self.points.extend(points)

    def on_epoch_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        pass

    def on_train_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        pass

    def on_preempt(self, state: LoopState) -> None:
        pass


class CheckpointEveryEpoch(ListSink):
    """Real checkpoint files every epoch, as CheckpointSink writes them (copied, then written
    in the background, one at a time), without the table."""

    def __init__(self, root: Path, spec: dict, normalization: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.root, self.spec, self.normalization = root, spec, normalization
        self.behind = Behind("bench-checkpoint")

    def on_epoch_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        self.behind.wait()
        payload = copied(checkpoint_state(state, self.spec, self.normalization, metrics))
        path = checkpoint_path(self.root, "bench", state.step)
        self.behind.start(lambda: write_atomically(payload, path))

    def on_train_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        self.behind.wait()


def in_process_spec(job: str, quick: bool) -> dict:
    spec = bare_loop.job_spec(job, quick)
    if job == "long" and not quick:
        spec["training"]["epochs"] = LONG_INPROCESS_EPOCHS
    return spec


def bare_in_process(spec: dict, job: str) -> dict[str, float]:
    torch.manual_seed(spec["training"]["seed"])
    data = bare_loop.load_data(spec, torch.device("cpu"))
    model = bare_loop.build_network(job, int(data["x_train"][0].numel()))
    optimizer = bare_loop.build_optimizer(spec, model)
    started = time.perf_counter()
    result = bare_loop.train(spec, model, optimizer, data)
    return {**result, "train_s": time.perf_counter() - started}


def traindock_in_process(spec_dict: dict, callbacks: str, scratch: Path) -> dict[str, float]:
    """As worker/child.py sets a job up, minus the database; times train() alone."""
    spec = JobSpec.model_validate(spec_dict)
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, torch.device("cpu"))
    model, _ = build_model(spec.model, data.input_shape)
    optimizer = build_optimizer(spec, model)
    sinks = {"none": [], "metrics": [ListSink()],
             "metrics+checkpoints": [CheckpointEveryEpoch(scratch, spec_dict,
                                                          data.normalization)]}[callbacks]
    started = time.perf_counter()
    final = train(spec, model, optimizer, build_loss(spec.loss), data, sinks)
    elapsed = time.perf_counter() - started
    steps = plan_run(len(data.x_train), spec.training).total_steps
    return {"steps": steps, "train_s": elapsed, "val_loss": final.get("val_loss", float("nan")),
            "test_accuracy": final.get("test_accuracy", float("nan"))}


def timed(run, repeats: int) -> tuple[float, dict]:
    """Median seconds per step over `repeats` runs after one warm-up run, and the last result."""
    run()
    results = [run() for _ in range(repeats)]
    return median([r["train_s"] / r["steps"] for r in results]), results[-1]


class IdleWorker:
    """Each job goes to an idle worker: with TRAINDOCK_WARM_CHILD, once its warm child (started
    when the previous job's child exits) has said it is ready for a job."""

    def __init__(self, stack: Stack, warm: bool) -> None:
        self.stack, self.warm, self.ready = stack, warm, 0

    def wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.warm:
            ready = sum(path.read_text().count("ready for a job")
                        for path in (self.stack.data_dir / "logs" / "warm").glob("*.log"))
            if ready > self.ready:
                self.ready = ready
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the warm training child did not become ready")
            time.sleep(0.05)


def submit_and_wait(client: httpx.Client, spec: dict) -> dict[str, float]:
    started = time.perf_counter()
    submitted_at = datetime.datetime.now(datetime.UTC)
    response = client.post("/v1/jobs", json=spec)
    response.raise_for_status()
    job_id = response.json()["id"]
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled", "pruned"):
            break
        time.sleep(POLL_S)
    total = time.perf_counter() - started
    if job["state"] != "succeeded":
        raise RuntimeError(f"job {job_id} {job['state']}: {job.get('error')}")

    def at(name: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(job[name])

    return {"total_s": total, "queue_s": (at("started_at") - submitted_at).total_seconds(),
            "run_s": (at("finished_at") - at("started_at")).total_seconds(),
            "test_accuracy": job["summary"]["test"].get("test_accuracy", float("nan"))}


def bare_subprocess(job: str, quick: bool) -> dict[str, float]:
    args = [sys.executable, str(Path(bare_loop.__file__)), "--job", job] + (
        ["--quick"] if quick else [])
    started = time.perf_counter()
    # The same threads as the training child, which sets them from the same rule.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env)
    result = json.loads(out.stdout)
    return {**result, "wall_s": time.perf_counter() - started}


def import_seconds(code: str, repeats: int) -> float:
    """Median wall time of a fresh interpreter that runs `code` (imports) and exits."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - started)
    return median(times)


def e2e_rows(rows: list, notes: list, job: str, mode: str, bare_runs: list[dict],
             jobs: list[dict]) -> None:
    bare_s = median([r["wall_s"] for r in bare_runs])
    total = median([r["total_s"] for r in jobs])
    ratio = total / bare_s
    target = "met" if ratio <= TARGET_E2E else "MISSED"
    if mode == "cold":
        rows.append([job, "(c) bare_loop.py as a subprocess, wall", bare_runs[0]["steps"],
                     bare_s * 1e3, 0.0, 1.0, "-"])
    what = "(c) traindock submit -> succeeded, wall" + (
        ", warm child" if mode == "warm" else "")
    rows.append([job, what, bare_runs[0]["steps"], total * 1e3, (total - bare_s) * 1e3, ratio,
                 target if job == "long" else f"({target})"])
    queue = median([r["queue_s"] for r in jobs])
    run_s = median([r["run_s"] for r in jobs])
    notice = total - queue - run_s
    bare_train = median([r["train_s"] for r in bare_runs])
    notes.append(f"{job} end to end ({mode} child): queue (submit to claim) {queue * 1e3:.0f} "
                 f"ms, run (claim to finish) {run_s * 1e3:.0f} ms, notice (finish to client) "
                 f"{notice * 1e3:.0f} ms; bare train() {bare_train * 1e3:.0f} ms of its "
                 f"{bare_s * 1e3:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed in-process runs per row (default 5, the long job at most 3; "
                        "--quick 2)")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    # Every run, bare or not, in-process or not, trains on the threads a training child uses.
    torch.set_num_threads(training_threads(0))
    e2e_repeats = {"long": 1} if args.quick else {"mlp": 2, "cnn": 2,
                                                                       "long": 1}
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="traindock-bench-ckpt-") as scratch:
        for job in bare_loop.JOBS:
            spec = in_process_spec(job, args.quick)
            runs = min(repeats, LONG_INPROCESS_REPEATS) if job == "long" else repeats
            bare_step, bare = timed(lambda spec=spec, job=job: bare_in_process(spec, job),
                                    runs)
            rows.append([job, "(a) bare loop, in-process", bare["steps"], bare_step * 1e3,
                         0.0, 1.0, "-"])
            for callbacks in ("none", "metrics", "metrics+checkpoints"):
                step, result = timed(lambda c=callbacks, s=spec: traindock_in_process(
                    s, c, Path(scratch)), runs)
                over = (step - bare_step) * 1e3
                rows.append([job, f"(b) traindock train(), callbacks: {callbacks}",
                             result["steps"], step * 1e3, over, step / bare_step,
                             "met" if over < TARGET_STEP_MS else "MISSED"])
                if callbacks == "none" and abs(result["val_loss"] - bare["val_loss"]) > 1e-4:
                    notes.append(f"{job}: val_loss differs: traindock {result['val_loss']:.6f}"
                                 f", bare {bare['val_loss']:.6f}")

        jobs_e2e = ["long"] if args.quick else list(bare_loop.JOBS)
        bare = {job: [bare_subprocess(job, args.quick) for _ in range(e2e_repeats[job])]
                for job in jobs_e2e}
        for mode, extra_env in (("cold", {"TRAINDOCK_WARM_CHILD": "false"}),
                                ("warm", {"TRAINDOCK_WARM_CHILD": "true"})):
            with Stack(extra_env=extra_env) as stack, httpx.Client(base_url="",
                                                                   timeout=30) as client:
                stack.start_api()
                stack.start_worker()
                client.base_url = stack.api_url
                idle_worker = IdleWorker(stack, warm=mode == "warm")
                if not args.quick:  # a warm-up job: connection pools, the OS's file cache
                    idle_worker.wait()
                    submit_and_wait(client, bare_loop.job_spec("mlp", True))
                # --quick proves the path with the long job's rows only.
                for job in jobs_e2e:
                    runs = []
                    for _ in range(e2e_repeats[job]):
                        idle_worker.wait()
                        runs.append(submit_and_wait(client, bare_loop.job_spec(job, args.quick)))
                    e2e_rows(rows, notes, job, mode, bare[job], runs)

    n = 1 if args.quick else 2
    notes.append(f"fresh interpreter: `import torch` {import_seconds('import torch', n):.2f} s; "
                 "`import torch, sklearn.datasets` "
                 f"{import_seconds('import torch, sklearn.datasets', n):.2f} s; "
                 f"`import worker.child` {import_seconds('import worker.child', n):.2f} s")
    print(header("Training overhead" + (" (--quick: tiny sizes)" if args.quick else "")))
    print(table(["job", "what", "steps", "time (ms, per step for a/b; total for c)",
                 "overhead (ms)", "ratio", "target"], rows, fmt=".3f"))
    print(f"\nTargets: (b) per-step overhead < {TARGET_STEP_MS} ms; (c) the long job within "
          f"{(TARGET_E2E - 1) * 100:.0f}% (ratio <= {TARGET_E2E}); short jobs' (c) targets in "
          "parentheses are for information. (a)/(b): median of per-step times over "
          f"{repeats} runs (long: {min(repeats, LONG_INPROCESS_REPEATS)}) after a warm-up; "
          "(c): median of "
          f"{', '.join(f'{k} {v}' for k, v in e2e_repeats.items())} runs"
          f"{'' if args.quick else ' after a warm-up job'}, poll every {POLL_S} s.")
    notes.append(f"torch intra-op threads: {torch.get_num_threads()} in every run (the training "
                 "child's default: the cores but one, worker/child.py training_threads)")
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
