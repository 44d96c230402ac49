"""The training loop. It knows nothing of databases or brokers: persistence lives in the
callbacks passed in (worker/callbacks.py), so the loop runs on a CPU in a test with a toy
network and a list as its sink. The run's plan (its batches and steps) is core/run_plan.py's,
the one the API counts total_steps with; batch_bounds and steps_per_epoch are re-exported.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
from torch import nn

from core.jobspec import JobSpec
from core.run_plan import RunPlan, plan_run
from core.run_plan import batch_bounds as batch_bounds
from core.run_plan import steps_per_epoch as steps_per_epoch
from core.specs.training import TrainingSpec
from models.build import Network
from worker.augment import build_augmenter
from worker.data import TrainData
from worker.evaluate import ACCURACY_TASKS, batch_predictions, count_correct, evaluate
from worker.precision import compile_network, resolve_precision
from worker.probes import LayerProbe
from worker.regularize import clip_gradients, l1_parameters, l1_penalty
from worker.schedules import Scheduler, build_scheduler
from worker.state import Callback, EpochProgress, LoopState, Point
from worker.stopping import EarlyStopper

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: the job fails with advice instead of a traceback."""


class Preempted(Exception):
    """Training stopped at a step boundary on request, after the callbacks checkpointed."""


def _check_finite(value: float, step: int, lr: float, what: str = "training loss") -> None:
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"the {what} became {value} at step {step}; lower the learning rate "
            f"(now {lr:g}), standardize the inputs, or use a different initialisation"
        )


def build_run_scheduler(spec: JobSpec, optimizer: torch.optim.Optimizer, plan: RunPlan
                        ) -> Scheduler:
    return build_scheduler(spec.schedule, optimizer, plan.steps_per_epoch, plan.epochs,
                           plan.total_steps)


def train(
    spec: JobSpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    data: TrainData,
    callbacks: list[Callback],
    *,
    scheduler: Scheduler | None = None,
    resume: LoopState | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """Train for the run spec.training describes and return the final metrics (test ones
    included).

    `scheduler` defaults to the spec's schedule, built here; `resume` is the state restored
    from a checkpoint (worker/checkpoints.py), its scheduler included. When
    `should_stop` turns true, the loop stops at the next step boundary, lets the callbacks
    checkpoint (on_preempt) and raises Preempted.

    Every way out of the loop, its end, a stop, a divergence or any exception, goes through
    the callbacks' on_exit with the state where it stopped: a callback that buffers writes
    what it holds there, so that a job that failed keeps its curves up to its last step.
    """
    state = resume or LoopState(model, optimizer,
                                torch.Generator().manual_seed(spec.training.seed))
    try:
        final = _train(spec, model, optimizer, loss_fn, data, callbacks, state,
                       resumed=resume is not None, scheduler=scheduler,
                       should_stop=should_stop)
    except BaseException as exc:
        _exit(callbacks, state, exc)
        raise
    _exit(callbacks, state, None)
    return final


def _train(
    spec: JobSpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    data: TrainData,
    callbacks: list[Callback],
    state: LoopState,
    *,
    resumed: bool,
    scheduler: Scheduler | None,
    should_stop: Callable[[], bool] | None,
) -> dict[str, float]:
    cfg = spec.training
    n = len(data.x_train)
    plan = plan_run(n, cfg)
    bounds, per_epoch_batches = plan.bounds, len(plan.bounds)
    log_every = cfg.log_every_steps or max(1, math.ceil(plan.steps_per_epoch / 50))
    device = data.x_train.device
    state.total_steps, state.epochs = plan.total_steps, plan.epochs
    if state.scheduler is None:
        if resumed and spec.schedule.type != "constant":
            # Built now, it would start the schedule over and reset the restored rates.
            raise ValueError("pass the scheduler to restore_loop_state to resume a schedule")
        state.scheduler = scheduler or build_run_scheduler(spec, optimizer, plan)
    schedule = state.scheduler
    precision = resolve_precision(cfg.precision, device)
    if precision.scaler is not None:
        if state.restored.get("scaler"):
            precision.scaler.load_state_dict(state.restored["scaler"])
        state.scaler = precision.scaler
    _note(state, precision.note)
    stopping = cfg.early_stopping
    if stopping is not None and state.stopper is None:
        state.stopper = EarlyStopper(stopping.monitor, stopping.resolved_mode,
                                     stopping.patience, stopping.min_delta,
                                     stopping.restore_best)
        state.stopper.load_state_dict(state.restored.get("early_stopping"), device)
    # The network's layers called directly: its wrapper's forward only calls them, and each
    # module call costs microseconds a step.
    forward = model.layers if type(model) is Network else model
    if cfg.compile:
        forward, note = compile_network(model, data.x_train[: min(n, cfg.batch_size)])
        _note(state, note)
    counts_correct = data.task in ACCURACY_TASKS  # regression has no accuracy to count

    def count(predicted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return count_correct(predicted, labels, data.task)

    # What each step reads, looked up once.
    x_train, y_train, task, accumulate = data.x_train, data.y_train, data.task, plan.accumulate
    scaler = precision.scaler
    autocast = precision.autocast if precision.dtype is not None else None

    augment = build_augmenter(spec.dataset, data.task, data.num_classes)
    probe = LayerProbe(model)
    reg = spec.regularization
    penalised = l1_parameters(model) if reg.l1 > 0 else []
    clipped = [p for p in model.parameters() if p.requires_grad] if reg.clip_grad else []

    def validate() -> dict[str, float]:
        val = evaluate(model, loss_fn, data.x_val, data.y_val, data.task,
                       top_k=spec.metrics.top_k).as_metrics("val")
        # The weights can blow up between two checks of the training loss (an update after
        # the last one checked): a non-finite point would fail the job's summary write, which
        # JSON cannot hold, and bury the advice under a database error.
        _check_finite(val["val_loss"], state.step, optimizer.param_groups[0]["lr"],
                      "validation loss")
        return val

    def stops_early(val: dict[str, float]) -> bool:
        if state.stopper is None or not state.stopper.update(val, model, state.step,
                                                             state.epoch):
            return False
        _note(state, state.stopper.describe_stop(state.step, state.epoch))
        return True

    metrics: dict[str, float] = {}
    stopped_early = False
    first_epoch = state.epoch if state.in_epoch.order is not None else state.epoch + 1
    for epoch in range(first_epoch, plan.epochs + 1):
        state.epoch = epoch
        progress = state.in_epoch
        if progress.order is None:
            progress.start(torch.randperm(n, generator=state.shuffle).to(device))
        model.train()
        started = time.perf_counter() - progress.elapsed_s
        layer_stats: dict[str, float] = {}
        penalty = grad_norm = None
        order = progress.order
        for first in range(progress.batch, per_epoch_batches, accumulate):
            last = min(first + accumulate, per_epoch_batches)
            group_size = bounds[last - 1][1] - bounds[first][0]
            optimizer.zero_grad(set_to_none=True)
            for b in range(first, last):
                start, end = bounds[b]
                idx = order[start:end]
                xb, yb = x_train[idx], y_train[idx]
                xb, target = augment(xb, yb) if augment else (xb, yb)
                if autocast is None:
                    out = forward(xb)
                    loss = loss_fn(out, target)
                else:
                    with autocast():
                        out = forward(xb)
                        loss = loss_fn(out, target)
                # Each batch's share of the group's mean: accumulated gradients equal those of
                # one batch of the whole group.
                share = (end - start) / group_size
                objective = loss * share if accumulate > 1 else loss
                if penalised:
                    penalty = l1_penalty(penalised, reg.l1)
                    objective = objective + penalty * share
                if scaler is not None:
                    scaler.scale(objective).backward()
                else:
                    objective.backward()
                # Kept, not summed: the sums are taken once per log window (settle).
                progress.add_batch(loss.detach(), end - start, batch_predictions(out, task), yb)
            if scaler is not None:
                scaler.unscale_(optimizer)  # clipping and probes see true gradients
            ends_epoch = last == per_epoch_batches or state.step + 1 == plan.total_steps
            if ends_epoch:  # per-layer statistics at each epoch's last step
                probe.after_backward()
            if reg.clip_grad is not None:
                grad_norm = clip_gradients(clipped, reg.clip_grad.by, reg.clip_grad.max)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if ends_epoch:
                layer_stats = probe.after_step()
            lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            schedule.after_step()
            state.step += 1
            progress.batch = last
            if state.step % log_every == 0 or ends_epoch:
                progress.settle(count)
                # The only host sync in the step loop, at a bounded rate.
                value = (progress.window_loss / progress.window_count).item()
                _check_finite(value, state.step, lr)
                values = {"train_loss_step": value, "lr": lr}
                if penalty is not None:
                    values["l1_penalty"] = penalty.item()
                if grad_norm is not None:
                    values["grad_norm"] = grad_norm.item()
                points = _points(values, state, epoch)
                _emit(callbacks, state, points)
                progress.window_loss.zero_()
                progress.window_count = 0
            if (cfg.eval_every_steps and data.x_val is not None
                    and state.step % cfg.eval_every_steps == 0):
                progress.pending_val = validate()
                model.train()
                _emit(callbacks, state, _points(progress.pending_val, state, epoch))
                if stops_early(progress.pending_val):
                    stopped_early = True
                    break
            if ends_epoch:
                break
            if should_stop is not None and should_stop():
                # Unsettled: the checkpoint keeps the window's batches as they are.
                progress.elapsed_s = time.perf_counter() - started
                _preempt(callbacks, state)
        elapsed = time.perf_counter() - started
        progress.settle(count)  # a mid-epoch early stop leaves batches since the last log
        seen = bounds[progress.batch - 1][1]
        metrics = {
            "train_loss": (progress.loss_sum / seen).item(),
            "samples_per_s": seen / elapsed if elapsed > 0 else 0.0,
        }
        if counts_correct:
            metrics["train_accuracy"] = progress.correct.item() / seen
        metrics |= layer_stats
        run_ends = stopped_early or state.step == plan.total_steps
        logged = dict(metrics)
        if data.x_val is not None and not stopped_early and _evaluates_now(cfg, epoch,
                                                                          state.step, run_ends):
            val = validate()
            logged |= val
            stopped_early = stops_early(val)
            run_ends = run_ends or stopped_early
        metrics = {**progress.pending_val, **logged}
        state.in_epoch = EpochProgress()
        _emit(callbacks, state, _points(logged, state, epoch))
        if run_ends:
            # The checkpoint callback writes the final checkpoint at the run's end, not here.
            state.epochs, state.total_steps = epoch, state.step
        # Stepped before the callbacks checkpoint, so the checkpoint holds the next epoch's
        # rate. `lr` was logged with train_loss_step; the epoch's metrics name the last rate.
        schedule.after_epoch(metrics)
        metrics["lr"] = lr
        for callback in callbacks:
            callback.on_epoch_end(state, metrics)
        if run_ends:
            break
        if should_stop is not None and should_stop():
            _preempt(callbacks, state)

    final = dict(metrics)
    restored = state.stopper is not None and stopped_early and state.stopper.restore(model)
    if restored and data.x_val is not None:
        final |= validate()  # the restored weights' own; already logged at their step
    if data.x_test is not None:
        test = evaluate(model, loss_fn, data.x_test, data.y_test, data.task,
                        top_k=spec.metrics.top_k).as_metrics("test")
        final |= test
        _emit(callbacks, state, _points(test, state, state.epoch))
    for callback in callbacks:
        callback.on_train_end(state, final)
    return final


def _evaluates_now(cfg: TrainingSpec, epoch: int, step: int, run_ends: bool) -> bool:
    """Whether the epoch's end evaluates: every eval_every_epochs epochs and at the run's end,
    or, evaluating by steps, only at the run's end when its last step did not already."""
    if cfg.eval_every_steps:
        return run_ends and step % cfg.eval_every_steps != 0
    return run_ends or epoch % cfg.eval_every_epochs == 0


def _points(values: dict[str, float], state: LoopState, epoch: int) -> list[Point]:
    return [Point(name=k, value=v, step=state.step, epoch=epoch) for k, v in values.items()]


def _note(state: LoopState, note: str | None) -> None:
    if note and note not in state.notes:
        state.notes.append(note)


def _preempt(callbacks: list[Callback], state: LoopState) -> None:
    for callback in callbacks:
        callback.on_preempt(state)
    raise Preempted(f"stopped at step {state.step} on request")


def _exit(callbacks: list[Callback], state: LoopState, error: BaseException | None) -> None:
    """Call on_exit, where a callback defines it. On the way out with an error, a callback
    that fails is logged and the others still run: the error that ended the loop is the one
    the caller must see."""
    for callback in callbacks:
        on_exit = getattr(callback, "on_exit", None)  # optional: most callbacks hold nothing
        if on_exit is None:
            continue
        if error is None:
            on_exit(state, None)
            continue
        try:
            on_exit(state, error)
        except Exception as exc:
            log.warning("on the way out after %s, %s failed: %s", type(error).__name__,
                        type(callback).__name__, exc)


def _emit(callbacks: list[Callback], state: LoopState, points: list[Point]) -> None:
    for callback in callbacks:
        callback.on_points(state, points)
