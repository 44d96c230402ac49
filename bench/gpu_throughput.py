"""The CUDA fast path (issue 7): samples/s and peak device memory of traindock's train()
against bench/bare_loop.py on the same device, in one process.

For each job in bare_loop.JOBS (the digits MLP and CNN, the long spirals MLP):
  (a) the bare loop: data as tensors on the device, randperm, fp32;
  (b) traindock's train() with the data as prepare_data places it (on the device when it
      fits in TRAINDOCK_DEVICE_DATA_MB, as a job's training process does), fp32;
  (c) the same with the data streamed from host memory, pinned for a GPU (device_data_mb=0:
      the path of a dataset too large for the device);
  (d) the same as (b) with `training.precision: bf16` (autocast);
  (e) with --compile, the same as (b) with `training.compile: true`.
Each row: one warm-up run, then the median of --repeats runs; samples/s counts training
samples (steps x batch size) over train()'s time; peak memory is
torch.cuda.max_memory_allocated over the timed runs (n/a on the CPU). cudnn.benchmark is on
for every CUDA row, bare or not, as a job's training process sets it (worker/child.py).

    python bench/gpu_throughput.py                 # on cuda when there is one, else cpu
    python bench/gpu_throughput.py --device cpu --quick    # tiny sizes: proves the script
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bare_loop  # noqa: E402
from bench.report import header, median, table  # noqa: E402
from core.jobspec import JobSpec  # noqa: E402
from models.build import build_model  # noqa: E402
from models.losses import build_loss  # noqa: E402
from worker.child import training_threads, tune_backends  # noqa: E402
from worker.data import prepare_data  # noqa: E402
from worker.optim import build_optimizer  # noqa: E402
from worker.train import plan_run, train  # noqa: E402

NAN = float("nan")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else NAN


def bare_run(spec: dict, job: str, device: torch.device) -> tuple[float, int]:
    """Seconds of training and samples trained, for the bare loop."""
    torch.manual_seed(spec["training"]["seed"])
    data = bare_loop.load_data(spec, device)
    model = bare_loop.build_network(job, int(data["x_train"][0].numel())).to(device)
    optimizer = bare_loop.build_optimizer(spec, model)
    synchronize(device)
    started = time.perf_counter()
    result = bare_loop.train(spec, model, optimizer, data)
    synchronize(device)
    return time.perf_counter() - started, result["steps"] * spec["training"]["batch_size"]


def traindock_run(spec_dict: dict, device: torch.device, device_data_mb: float
                  ) -> tuple[float, int, str]:
    """Seconds of train(), samples trained, and the notes the run left (fallbacks)."""
    spec = JobSpec.model_validate(spec_dict)
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, device, device_data_mb=device_data_mb)
    model, _ = build_model(spec.model, data.input_shape, shape_device="cpu")
    model.to(device)
    optimizer = build_optimizer(spec, model)
    notes: list[str] = []

    class Notes:  # the loop's fallbacks (bf16 without support, compile failures) reach here
        def on_points(self, state, points) -> None:
            notes[:] = state.notes

        def on_epoch_end(self, state, metrics) -> None:
            pass

        def on_train_end(self, state, metrics) -> None:
            notes[:] = state.notes

        def on_preempt(self, state) -> None:
            pass

    synchronize(device)
    started = time.perf_counter()
    train(spec, model, optimizer, build_loss(spec.loss), data, [Notes()])
    synchronize(device)
    elapsed = time.perf_counter() - started
    steps = plan_run(len(data.x_train), spec.training).total_steps
    return elapsed, steps * spec.training.batch_size, "; ".join(notes)


def timed(run, repeats: int, device: torch.device) -> tuple[float, float, str]:
    """Median samples/s over `repeats` runs after a warm-up run, the peak MiB, the notes."""
    run()
    reset_peak(device)
    results = [run() for _ in range(repeats)]
    rates = [r[1] / r[0] for r in results]
    return median(rates), peak_mib(device), results[-1][2]


def variants(spec: dict, compile_too: bool) -> list[tuple[str, dict, float]]:
    """(what, spec, device_data_mb) for the traindock rows."""
    def with_training(**changes) -> dict:
        changed = copy.deepcopy(spec)
        changed["training"].update(changes)
        return changed

    rows = [("(b) train(), data on the device, fp32", spec, 1024.0),
            ("(c) train(), data streamed from the host (pinned for a GPU), fp32", spec, 0.0),
            ("(d) train(), data on the device, bf16 autocast", with_training(precision="bf16"),
             1024.0)]
    if compile_too:
        rows.append(("(e) train(), data on the device, torch.compile",
                     with_training(compile=True), 1024.0))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"),
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 3)")
    parser.add_argument("--compile", action="store_true",
                        help="add a torch.compile row (minutes of compiling per job)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: this machine has no CUDA device")
    repeats = args.repeats or (1 if args.quick else 3)
    torch.set_num_threads(training_threads(0))
    tune_backends(device)
    rows = []
    for job in bare_loop.JOBS:
        spec = bare_loop.job_spec(job, args.quick)
        spec["resources"]["device"] = args.device
        if job == "long" and not args.quick:
            spec["training"]["epochs"] = 5  # samples/s does not depend on the epoch count
        bare_rate, bare_peak, _ = timed(lambda s=spec, j=job: (*bare_run(s, j, device), ""),
                                        repeats, device)
        rows.append([job, "(a) bare loop, data on the device, fp32", bare_rate, 1.0,
                     bare_peak, 1.0 if bare_peak == bare_peak else NAN, ""])
        for what, variant, device_data_mb in variants(spec, args.compile):
            rate, peak, notes = timed(
                lambda v=variant, m=device_data_mb: traindock_run(v, device, m), repeats, device)
            rows.append([job, what, rate, rate / bare_rate, peak,
                         peak / bare_peak if bare_peak == bare_peak else NAN, notes])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(header(f"Device throughput on {args.device} ({name})"
                 + (" (--quick: tiny sizes)" if args.quick else "")))
    print(table(["job", "what", "samples/s", "/ bare", "peak MiB", "/ bare peak", "notes"],
                rows, fmt=".2f"))
    print(f"\nMedian of {repeats} timed runs after a warm-up; samples/s = steps x batch size / "
          "train time (a synchronize before and after); peak MiB: "
          "torch.cuda.max_memory_allocated (n/a on the CPU).")


if __name__ == "__main__":
    main()
