"""The learning-rate range test's loop (`mode: "lr_find"`): its own few lines rather than a
mode of the training loop, which it shares nothing with but the step itself. Like the
training loop it knows nothing of databases: points and progress go to the callbacks
(worker/callbacks.py's MetricSink), the report is returned. The arithmetic (rates,
smoothing, when to stop, suggestions) is core/lr_find.py's.

What it takes from the spec: the network, loss, optimizer (its rate replaced at every
step), batch_size, seed, the dataset's augmentation, and regularization (L1, clipping).
What it leaves: epochs, max_steps, the schedule, evaluation, early stopping, checkpoints,
accumulate_batches (one batch per step) and precision (fp32: the range test measures the
rate, and a loss scaler's skipped steps would blur it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import nn

from core.jobspec import JobSpec
from core.lr_find import DivergenceWatch, RangeTestReport, SmoothedLoss, rate_at, suggest
from core.points import Point
from core.run_plan import batch_bounds
from worker.augment import build_augmenter
from worker.data import TrainData
from worker.regularize import clip_gradients, l1_parameters, l1_penalty
from worker.state import Callback, LoopState
from worker.train import Preempted

log = logging.getLogger(__name__)

# Metric names: the smoothed loss the rules read, the raw one, and the rate, all per step.
# "/" keeps the two losses out of the summary's best values (core/specs/metrics.py): the
# lowest loss of a range test is no score.
SMOOTHED, RAW, RATE = "lr_find/loss", "lr_find/loss_raw", "lr"


def find_learning_rate(spec: JobSpec, model: nn.Module, optimizer: torch.optim.Optimizer,
                       loss_fn: nn.Module, data: TrainData, callbacks: list[Callback], *,
                       should_stop: Callable[[], bool] | None = None) -> RangeTestReport:
    """Run the range test spec.range_test describes and return its report. Each step trains
    one batch at the next rate and logs the smoothed and raw loss and the rate at that step
    (steps count from 1, as the training loop's do). When `should_stop` turns true, the
    callbacks' on_preempt runs and Preempted is raised: the test has no checkpoint, so a
    preempted attempt starts it over."""
    test = spec.range_test
    if test is None:
        raise ValueError("find_learning_rate needs a spec in mode lr_find")
    state = LoopState(model, optimizer, torch.Generator().manual_seed(spec.training.seed))
    error: BaseException | None = None
    try:
        return _run(spec, state, loss_fn, data, callbacks, should_stop)
    except BaseException as exc:
        error = exc
        raise
    finally:
        for callback in callbacks:
            on_exit = getattr(callback, "on_exit", None)
            if on_exit is not None:
                on_exit(state, error)


def _run(spec: JobSpec, state: LoopState, loss_fn: nn.Module, data: TrainData,
         callbacks: list[Callback], should_stop: Callable[[], bool] | None) -> RangeTestReport:
    test = spec.range_test
    assert test is not None
    model, optimizer = state.model, state.optimizer
    n = len(data.x_train)
    bounds = batch_bounds(n, spec.training.batch_size)
    state.total_steps, state.epochs = test.steps, math.ceil(test.steps / len(bounds))
    augment = build_augmenter(spec.dataset, data.task, data.num_classes)
    reg = spec.regularization
    penalised = l1_parameters(model) if reg.l1 > 0 else []
    clipped = [p for p in model.parameters() if p.requires_grad] if reg.clip_grad else []
    smoother, watch = SmoothedLoss(test.smoothing), DivergenceWatch(test.stop_factor)
    lrs: list[float] = []
    smoothed: list[float] = []
    stopped = "end of range"
    order = torch.empty(0, dtype=torch.long)
    model.train()
    for index in range(test.steps):
        if should_stop is not None and should_stop():
            for callback in callbacks:
                callback.on_preempt(state)
            raise Preempted(f"stopped at step {state.step} of the range test on request")
        batch = index % len(bounds)
        if batch == 0:  # a new pass over the training split, reshuffled
            state.epoch += 1
            order = torch.randperm(n, generator=state.shuffle).to(data.x_train.device)
        lr = rate_at(index, test.start_lr, test.end_lr, test.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        start, end = bounds[batch]
        idx = order[start:end]
        xb, yb = data.x_train[idx], data.y_train[idx]
        xb, target = augment(xb, yb) if augment else (xb, yb)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), target)
        raw = loss.item()
        if not math.isfinite(raw):
            stopped = f"diverged at lr {lr:.3g} (the loss became {raw})"
            break
        objective = loss + l1_penalty(penalised, reg.l1) if penalised else loss
        objective.backward()
        if reg.clip_grad is not None:
            clip_gradients(clipped, reg.clip_grad.by, reg.clip_grad.max)
        optimizer.step()
        state.step = index + 1
        value = smoother.add(raw)
        lrs.append(lr)
        smoothed.append(value)
        points = [Point(name=name, value=v, step=state.step, epoch=state.epoch)
                  for name, v in ((SMOOTHED, value), (RAW, raw), (RATE, lr))]
        for callback in callbacks:
            callback.on_points(state, points)
        if watch.diverged(value):
            stopped = (f"diverged at lr {lr:.3g} (the smoothed loss {value:.4g} passed "
                       f"{test.stop_factor:g} x its lowest, {watch.best:.4g})")
            break
    # Progress ends where the test did, as an early stop ends a training run's.
    state.total_steps, state.epochs = state.step, state.epoch
    report = suggest(lrs, smoothed, test.steps, test.suggestion, stopped)
    log.info("range test: %d points, %s; suggestions %s", report.points, stopped,
             report.suggestions)
    return report
