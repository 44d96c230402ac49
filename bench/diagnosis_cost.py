"""The diagnosis's cost (issue 16): per-step training time with the activation statistics
(worker/activation_probe.py, which watches the validation pass) and the diagnosis callback
(worker/diagnosis.py) against without them, in-process on bench/bare_loop.py's jobs (the
digits MLP, the digits CNN, the long spirals MLP, whose whole run is the one-minute job; 2
epochs of it here: the cost is per epoch). Without: the probe watches and collects nothing
and no diagnosis callback runs; both variants log to an in-memory sink. Runs alternate
(with, without, with, ...) so that a busy machine slows both alike; the median of
--repeats each, after a warm-up of each. The end-to-end ratio is noisy on a shared machine,
so the probe's own cost is also timed alone: a validation pass watched and collected
against the same pass unwatched, the difference over an epoch's training time. Target:
under 2% of a step.

    python bench/diagnosis_cost.py            # about a minute on 2 cores
    python bench/diagnosis_cost.py --quick    # a smoke test
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bare_loop  # noqa: E402
from bench.report import header, median, table  # noqa: E402
from bench.train_overhead import ListSink  # noqa: E402
from core.diagnosis import facts_from_spec  # noqa: E402
from core.jobspec import JobSpec  # noqa: E402
from models.build import build_model  # noqa: E402
from models.losses import build_loss  # noqa: E402
from worker.activation_probe import ActivationProbe  # noqa: E402
from worker.callbacks import Summary  # noqa: E402
from worker.child import training_threads  # noqa: E402
from worker.data import prepare_data  # noqa: E402
from worker.diagnosis import DiagnosisCallback  # noqa: E402
from worker.evaluate import evaluate  # noqa: E402
from worker.optim import build_optimizer  # noqa: E402
from worker.train import plan_run, train  # noqa: E402

TARGET = 0.02
LONG_EPOCHS = 2


def one_run(spec_dict: dict, diagnosed: bool) -> float:
    """Seconds per step of one train() run."""
    spec = JobSpec.model_validate(spec_dict)
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, torch.device("cpu"))
    model, _ = build_model(spec.model, data.input_shape)
    optimizer = build_optimizer(spec, model)
    steps = plan_run(len(data.x_train), spec.training).total_steps
    callbacks = [ListSink()]
    if diagnosed:
        facts = facts_from_spec(spec, task=data.task, num_classes=data.num_classes,
                                total_steps=steps)
        callbacks.append(DiagnosisCallback(facts, Summary()))
    started = time.perf_counter()
    if diagnosed:
        train(spec, model, optimizer, build_loss(spec.loss), data, callbacks)
    else:
        with mock.patch.object(ActivationProbe, "watching", lambda self: nullcontext()), \
                mock.patch.object(ActivationProbe, "collect", lambda self: {}):
            train(spec, model, optimizer, build_loss(spec.loss), data, callbacks)
    return (time.perf_counter() - started) / steps


def probe_call_s(spec_dict: dict, repeats: int = 30) -> tuple[float, int]:
    """Median extra seconds the probe adds to one validation pass (watched and collected
    against plain, alternating), and the job's steps per epoch."""
    spec = JobSpec.model_validate(spec_dict)
    data = prepare_data(spec, torch.device("cpu"))
    model, _ = build_model(spec.model, data.input_shape)
    probe = ActivationProbe(model)
    loss_fn = build_loss(spec.loss)

    def validate(watched: bool) -> float:
        started = time.perf_counter()
        with probe.watching() if watched else nullcontext():
            evaluate(model, loss_fn, data.x_val, data.y_val, data.task)
        if watched:
            probe.collect()
        return time.perf_counter() - started

    validate(True), validate(False)
    pairs = [(validate(True), validate(False)) for _ in range(repeats)]
    extra = median([w for w, _ in pairs]) - median([p for _, p in pairs])
    return max(extra, 0.0), plan_run(len(data.x_train), spec.training).steps_per_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=None, help="runs per variant (5)")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 5)
    torch.set_num_threads(training_threads(0))
    rows = []
    for job in bare_loop.JOBS:
        spec = bare_loop.job_spec(job, args.quick,
                                  LONG_EPOCHS if job == "long" and not args.quick else None)
        one_run(spec, True)
        one_run(spec, False)
        runs: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(repeats):
            for diagnosed in (True, False):
                runs[diagnosed].append(one_run(spec, diagnosed))
        with_s, without_s = median(runs[True]), median(runs[False])
        ratio = with_s / without_s
        call_s, per_epoch = probe_call_s(spec)
        share = call_s / (per_epoch * without_s)
        rows.append([job, per_epoch, without_s * 1e3, with_s * 1e3, ratio, call_s * 1e3,
                     share, "met" if share < TARGET else "MISSED"])
    print(header("Diagnosis cost" + (" (--quick)" if args.quick else "")))
    print(table(["job", "steps/epoch", "ms/step without", "ms/step with", "ratio",
                 "probe ms per evaluation", "probe share of an epoch", "target"], rows, fmt=".4f"))
    print(f"\nThe ratio is the whole cost (probe and rules) measured end to end, noisy on a busy "
          f"machine; the probe's share (what it adds to a validation pass, once an epoch, "
          f"over the epoch's training time) is the stable figure. Target: under "
          f"{TARGET:.0%}. Median of {repeats} alternating runs each; torch threads: "
          f"{torch.get_num_threads()}.")


if __name__ == "__main__":
    main()
