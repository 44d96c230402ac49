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

from core.diagnosis import RunFacts, diverged_message, facts_from_spec
from core.diagnosis.thresholds import PROBE_SAMPLES
from core.jobspec import JobSpec
from core.run_plan import RunPlan, plan_run
from core.run_plan import batch_bounds as batch_bounds
from core.run_plan import steps_per_epoch as steps_per_epoch
from core.specs.training import TrainingSpec
from models.build import Network
from worker.activation_probe import ActivationProbe
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
    """The loss became NaN or infinite, or its smoothed value diverged (worker/diagnosis.py):
    the job fails with advice that depends on its spec instead of a traceback. `step` and
    `reason` let the diagnosis record the finding."""

    def __init__(self, message: str, step: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.step, self.reason = step, reason


class Preempted(Exception):
    """Training stopped at a step boundary on request, after the callbacks checkpointed."""


def _check_finite(value: float, step: int, facts: RunFacts,
                  what: str = "training loss") -> None:
    if not math.isfinite(value):
        reason = f"the {what} became {value}"
        raise TrainingDiverged(diverged_message(facts, step, reason), step=step, reason=reason)


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
    eval_batch: int | None = None,
) -> dict[str, float]:
    """Train for the run spec.training describes and return the final metrics (test ones
    included). See TrainingLoop."""
    return TrainingLoop(spec, model, optimizer, loss_fn, data, callbacks, scheduler=scheduler,
                        resume=resume, should_stop=should_stop, eval_batch=eval_batch).run()


class TrainingLoop:
    """One run of training, in named phases:

    - `step_group`: the batches of one optimizer step (several with gradient accumulation),
      forward and backward, then clipping, the optimizer's step and the schedule's;
    - `log_window`: every log_every_steps steps and at an epoch's end, the window's mean
      training loss and the step's rate (and penalties) as points; the only host sync;
    - `evaluate_mid_epoch`: every eval_every_steps steps, validation and early stopping;
    - `end_epoch`: the epoch's metrics, its evaluation, the schedule's epoch step, the
      callbacks' on_epoch_end (checkpoints);
    - `finish`: restoring the best weights, the test split, on_train_end.

    `scheduler` defaults to the spec's schedule, built here; `resume` is the state restored
    from a checkpoint (worker/checkpoints.py), its scheduler included. When `should_stop`
    turns true, the loop stops at the next step boundary, lets the callbacks checkpoint
    (on_preempt) and raises Preempted. `eval_batch`: samples per evaluation batch, sized to
    the network's memory (core/memory_estimate.py); None: worker/evaluate.py's default.

    Every way out of the loop, its end, a stop, a divergence or any exception, goes through
    the callbacks' on_exit with the state where it stopped: a callback that buffers writes
    what it holds there, so that a job that failed keeps its curves up to its last step.
    """

    def __init__(
        self,
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
        eval_batch: int | None = None,
    ) -> None:
        self.spec, self.cfg = spec, spec.training
        self.model, self.optimizer, self.loss_fn, self.data = model, optimizer, loss_fn, data
        self.callbacks = callbacks
        self.should_stop = should_stop
        self.eval_batch = eval_batch
        self.state = resume or LoopState(model, optimizer,
                                         torch.Generator().manual_seed(spec.training.seed))
        self.resumed = resume is not None
        self.scheduler = scheduler
        self.n = len(data.x_train)
        # What the phases below leave for the next: the rate the last step used, its penalty
        # and gradient norm (tensors, read at the log window), and the epoch's layer
        # statistics, taken at its last step.
        self.lr = optimizer.param_groups[0]["lr"]
        self.penalty: torch.Tensor | None = None
        self.grad_norm: torch.Tensor | None = None
        self.layer_stats: dict[str, float] = {}
        self.stopped_early = False

    def run(self) -> dict[str, float]:
        try:
            self._set_up()
            final = self._epochs()
        except BaseException as exc:
            self._exit(exc)
            raise
        self._exit(None)
        return final

    # --- set-up ---------------------------------------------------------------------------

    def _set_up(self) -> None:
        cfg, state, model, data = self.cfg, self.state, self.model, self.data
        self.plan = plan_run(self.n, cfg)
        self.log_every = cfg.log_every_steps or max(1, math.ceil(self.plan.steps_per_epoch / 50))
        state.total_steps, state.epochs = self.plan.total_steps, self.plan.epochs
        if state.scheduler is None:
            if self.resumed and self.spec.schedule.type != "constant":
                # Built now, it would start the schedule over and reset the restored rates.
                raise ValueError("pass the scheduler to restore_loop_state to resume a schedule")
            state.scheduler = self.scheduler or build_run_scheduler(self.spec, self.optimizer,
                                                                    self.plan)
        self.schedule = state.scheduler
        precision = resolve_precision(cfg.precision, data.x_train.device)
        if precision.scaler is not None:
            if state.restored.get("scaler"):
                precision.scaler.load_state_dict(state.restored["scaler"])
            state.scaler = precision.scaler
        self._note(precision.note)
        self.scaler = precision.scaler
        self.autocast = precision.autocast if precision.dtype is not None else None
        stopping = cfg.early_stopping
        if stopping is not None and state.stopper is None:
            state.stopper = EarlyStopper(stopping.monitor, stopping.resolved_mode,
                                         stopping.patience, stopping.min_delta,
                                         stopping.restore_best)
            state.stopper.load_state_dict(state.restored.get("early_stopping"),
                                          data.x_train.device)
        # The network's layers called directly: its wrapper's forward only calls them, and
        # each module call costs microseconds a step.
        self.forward = model.layers if type(model) is Network else model
        if cfg.compile:
            self.forward, note = compile_network(model, data.x_train[: min(self.n,
                                                                           cfg.batch_size)])
            self._note(note)
        self.augment = build_augmenter(self.spec.dataset, data.task, data.num_classes)
        self.probe = LayerProbe(model)
        # Watches the validation pass; without a validation split, makes its own at each
        # epoch's end over training samples.
        self.activation_probe = ActivationProbe(
            model, data.x_train[:PROBE_SAMPLES] if data.x_val is None else None)
        # The divergence advice depends on the spec (core/diagnosis/divergence.py).
        self.facts = facts_from_spec(self.spec, task=data.task, num_classes=data.num_classes,
                                     total_steps=self.plan.total_steps)
        reg = self.spec.regularization
        self.l1 = reg.l1
        self.penalised = l1_parameters(model) if reg.l1 > 0 else []
        self.clip = reg.clip_grad
        self.clipped = [p for p in model.parameters() if p.requires_grad] if reg.clip_grad else []

    def _epochs(self) -> dict[str, float]:
        state = self.state
        metrics: dict[str, float] = {}
        first_epoch = state.epoch if state.in_epoch.order is not None else state.epoch + 1
        for epoch in range(first_epoch, self.plan.epochs + 1):
            state.epoch = epoch
            started = self._train_epoch(epoch)
            metrics, run_ends = self.end_epoch(epoch, time.perf_counter() - started)
            if run_ends:
                break
            if self._stop_requested():
                self._preempt()
        return self.finish(metrics)

    # --- an epoch's steps -----------------------------------------------------------------

    def _train_epoch(self, epoch: int) -> float:
        """Train the epoch's step groups, from where its progress stands; returns the
        perf_counter the epoch's time counts from."""
        state, bounds, accumulate = self.state, self.plan.bounds, self.plan.accumulate
        progress = state.in_epoch
        if progress.order is None:
            progress.start(torch.randperm(self.n, generator=state.shuffle)
                           .to(self.data.x_train.device))
        self.model.train()
        started = time.perf_counter() - progress.elapsed_s
        self.layer_stats, self.penalty, self.grad_norm = {}, None, None
        eval_every = self.cfg.eval_every_steps if self.data.x_val is not None else 0
        for first in range(progress.batch, len(bounds), accumulate):
            ends_epoch = self.step_group(first, min(first + accumulate, len(bounds)))
            if state.step % self.log_every == 0 or ends_epoch:
                self.log_window(epoch)
            if eval_every and state.step % eval_every == 0 and self.evaluate_mid_epoch(epoch):
                self.stopped_early = True
                break
            if ends_epoch:
                break
            if self._stop_requested():
                # Unsettled: the checkpoint keeps the window's batches as they are.
                progress.elapsed_s = time.perf_counter() - started
                self._preempt()
        return started

    def step_group(self, first: int, last: int) -> bool:
        """Train batches [first, last) of the epoch as one optimizer step. Returns whether
        the step ends the epoch (its last batch, or the run's last step)."""
        state, optimizer, scaler = self.state, self.optimizer, self.scaler
        progress, bounds, order = state.in_epoch, self.plan.bounds, state.in_epoch.order
        x_train, y_train, task = self.data.x_train, self.data.y_train, self.data.task
        forward, loss_fn, augment, autocast = self.forward, self.loss_fn, self.augment, \
            self.autocast
        accumulate, penalised = self.plan.accumulate > 1, self.penalised
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
            # Each batch's share of the group's mean: accumulated gradients equal those of one
            # batch of the whole group.
            share = (end - start) / group_size
            objective = loss * share if accumulate else loss
            if penalised:
                self.penalty = l1_penalty(penalised, self.l1)
                objective = objective + self.penalty * share
            if scaler is not None:
                scaler.scale(objective).backward()
            else:
                objective.backward()
            # Kept, not summed: the sums are taken once per log window (settle).
            progress.add_batch(loss.detach(), end - start, batch_predictions(out, task), yb)
        if scaler is not None:
            scaler.unscale_(optimizer)  # clipping and probes see true gradients
        ends_epoch = last == len(bounds) or state.step + 1 == self.plan.total_steps
        if ends_epoch:  # per-layer statistics at each epoch's last step
            self.probe.after_backward()
        if self.clip is not None:
            self.grad_norm = clip_gradients(self.clipped, self.clip.by, self.clip.max)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if ends_epoch:
            self.layer_stats = self.probe.after_step()
        self.lr = optimizer.param_groups[0]["lr"]  # the rate this step used
        self.schedule.after_step()
        state.step += 1
        progress.batch = last
        return ends_epoch

    def log_window(self, epoch: int) -> None:
        """Fold the window's batches and log its mean training loss with the step's rate."""
        state, progress = self.state, self.state.in_epoch
        progress.settle(self._count)
        # The only host sync in the step loop, at a bounded rate.
        value = (progress.window_loss / progress.window_count).item()
        _check_finite(value, state.step, self.facts)
        values = {"train_loss_step": value, "lr": self.lr}
        if self.penalty is not None:
            values["l1_penalty"] = self.penalty.item()
        if self.grad_norm is not None:
            values["grad_norm"] = self.grad_norm.item()
        self._emit(_points(values, state, epoch))
        progress.window_loss.zero_()
        progress.window_count = 0

    def evaluate_mid_epoch(self, epoch: int) -> bool:
        """Validate at a step (training.eval_every_steps); returns whether to stop early."""
        progress = self.state.in_epoch
        progress.pending_val = self._validate()
        self.model.train()
        self._emit(_points(progress.pending_val, self.state, epoch))
        return self._stops_early(progress.pending_val)

    # --- an epoch's end -------------------------------------------------------------------

    def end_epoch(self, epoch: int, elapsed: float) -> tuple[dict[str, float], bool]:
        """The epoch's metrics and evaluation, the schedule's epoch step and the callbacks'
        on_epoch_end. Returns the metrics and whether the run ends here."""
        state, plan, data = self.state, self.plan, self.data
        progress = state.in_epoch
        progress.settle(self._count)  # a mid-epoch early stop leaves batches since the last log
        seen = plan.bounds[progress.batch - 1][1]
        metrics = {
            "train_loss": (progress.loss_sum / seen).item(),
            "samples_per_s": seen / elapsed if elapsed > 0 else 0.0,
        }
        if data.task in ACCURACY_TASKS:  # regression has no accuracy to count
            metrics["train_accuracy"] = progress.correct.item() / seen
        metrics |= self.layer_stats
        if data.x_val is None:  # no validation pass to watch (worker/activation_probe.py)
            metrics |= self.activation_probe.measure()
        run_ends = self.stopped_early or state.step == plan.total_steps
        logged = dict(metrics)
        if data.x_val is not None and not self.stopped_early and _evaluates_now(
                self.cfg, epoch, state.step, run_ends):
            val = self._validate()
            logged |= val
            self.stopped_early = self._stops_early(val)
            run_ends = run_ends or self.stopped_early
        metrics = {**progress.pending_val, **logged}
        state.in_epoch = EpochProgress()
        self._emit(_points(logged, state, epoch))
        if run_ends:
            # The checkpoint callback writes the final checkpoint at the run's end, not here.
            state.epochs, state.total_steps = epoch, state.step
        # Stepped before the callbacks checkpoint, so the checkpoint holds the next epoch's
        # rate. `lr` was logged with train_loss_step; the epoch's metrics name the last rate.
        self.schedule.after_epoch(metrics)
        metrics["lr"] = self.lr
        for callback in self.callbacks:
            callback.on_epoch_end(state, metrics)
        return metrics, run_ends

    # --- the finish -----------------------------------------------------------------------

    def finish(self, metrics: dict[str, float]) -> dict[str, float]:
        """Restore the best weights (early stopping), evaluate the test split, and call the
        callbacks' on_train_end. Returns the final metrics."""
        state, data = self.state, self.data
        final = dict(metrics)
        restored = (state.stopper is not None and self.stopped_early
                    and state.stopper.restore(self.model))
        if restored and data.x_val is not None:
            final |= self._validate()  # the restored weights' own; already logged at their step
        if data.x_test is not None:
            test = evaluate(self.model, self.loss_fn, data.x_test, data.y_test, data.task,
                            top_k=self.spec.metrics.top_k, batch_size=self.eval_batch
                            ).as_metrics("test")
            final |= test
            self._emit(_points(test, state, state.epoch))
        for callback in self.callbacks:
            callback.on_train_end(state, final)
        return final

    # --- helpers --------------------------------------------------------------------------

    def _count(self, predicted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return count_correct(predicted, labels, self.data.task)

    def _validate(self) -> dict[str, float]:
        data = self.data
        with self.activation_probe.watching():
            val = evaluate(self.model, self.loss_fn, data.x_val, data.y_val, data.task,
                           top_k=self.spec.metrics.top_k, batch_size=self.eval_batch
                           ).as_metrics("val")
        # The weights can blow up between two checks of the training loss (an update after
        # the last one checked): a non-finite point would fail the job's summary write, which
        # JSON cannot hold, and bury the advice under a database error.
        _check_finite(val["val_loss"], self.state.step, self.facts, "validation loss")
        return val | self.activation_probe.collect()  # activation statistics, for the diagnosis

    def _stops_early(self, val: dict[str, float]) -> bool:
        state = self.state
        if state.stopper is None or not state.stopper.update(val, self.model, state.step,
                                                             state.epoch):
            return False
        self._note(state.stopper.describe_stop(state.step, state.epoch))
        return True

    def _stop_requested(self) -> bool:
        return self.should_stop is not None and self.should_stop()

    def _note(self, note: str | None) -> None:
        if note and note not in self.state.notes:
            self.state.notes.append(note)

    def _emit(self, points: list[Point]) -> None:
        for callback in self.callbacks:
            callback.on_points(self.state, points)

    def _preempt(self) -> None:
        for callback in self.callbacks:
            callback.on_preempt(self.state)
        raise Preempted(f"stopped at step {self.state.step} on request")

    def _exit(self, error: BaseException | None) -> None:
        """Call on_exit, where a callback defines it. On the way out with an error, a callback
        that fails is logged and the others still run: the error that ended the loop is the
        one the caller must see."""
        for callback in self.callbacks:
            on_exit = getattr(callback, "on_exit", None)  # optional: most callbacks hold nothing
            if on_exit is None:
                continue
            if error is None:
                on_exit(self.state, None)
                continue
            try:
                on_exit(self.state, error)
            except Exception as exc:
                log.warning("on the way out after %s, %s failed: %s", type(error).__name__,
                            type(callback).__name__, exc)


def _evaluates_now(cfg: TrainingSpec, epoch: int, step: int, run_ends: bool) -> bool:
    """Whether the epoch's end evaluates: every eval_every_epochs epochs and at the run's end,
    or, evaluating by steps, only at the run's end when its last step did not already."""
    if cfg.eval_every_steps:
        return run_ends and step % cfg.eval_every_steps != 0
    return run_ends or epoch % cfg.eval_every_epochs == 0


def _points(values: dict[str, float], state: LoopState, epoch: int) -> list[Point]:
    return [Point(name=k, value=v, step=state.step, epoch=epoch) for k, v in values.items()]
