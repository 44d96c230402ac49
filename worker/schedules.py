"""Learning-rate schedules from the spec, built on torch.optim.lr_scheduler so that their
state_dict goes into the checkpoint and a resumed run follows the same rates."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import lr_scheduler

from core.specs.schedule import ScheduleSpec, WarmupSchedule


class Scheduler:
    """Steps a torch scheduler at the right moments: after every optimizer step or after
    every epoch, with the epoch's metrics for reduce_on_plateau. `constant` has none."""

    def __init__(
        self, torch_scheduler: lr_scheduler.LRScheduler | None, per_step: bool,
        monitor: str | None = None,
    ) -> None:
        self.torch_scheduler = torch_scheduler
        self.per_step = per_step
        self.monitor = monitor

    def after_step(self) -> None:
        if self.torch_scheduler is not None and self.per_step:
            self.torch_scheduler.step()

    def after_epoch(self, metrics: dict[str, float]) -> None:
        if self.torch_scheduler is None or self.per_step:
            return
        if self.monitor is None:
            self.torch_scheduler.step()
            return
        if self.monitor not in metrics:
            return  # no evaluation this epoch (training.eval_every_epochs > 1): no news
        self.torch_scheduler.step(metrics[self.monitor])

    def state_dict(self) -> dict[str, Any]:
        return {} if self.torch_scheduler is None else self.torch_scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.torch_scheduler is not None and state:
            self.torch_scheduler.load_state_dict(state)


def build_scheduler(
    spec: ScheduleSpec, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int,
    total_steps: int | None = None,
) -> Scheduler:
    """The schedule for a run of `epochs` epochs of `steps_per_epoch` optimizer steps, that
    ends after `total_steps` steps (default: all of them; fewer with training.max_steps).

    Build it before restoring the optimizer from a checkpoint: constructing a torch scheduler
    sets the optimizer's rates, which the checkpoint's optimizer state then puts back."""
    if spec.type == "constant":
        return Scheduler(None, per_step=False)
    if spec.type == "reduce_on_plateau":
        plateau = lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=spec.resolved_mode, factor=spec.factor, patience=spec.patience,
            threshold=spec.threshold, threshold_mode=spec.threshold_mode,
            cooldown=spec.cooldown, min_lr=spec.min_lr,
        )
        return Scheduler(plateau, per_step=False, monitor=spec.monitor)
    total_steps = total_steps or steps_per_epoch * epochs
    if spec.type == "one_cycle":
        cycle = lr_scheduler.OneCycleLR(
            optimizer, max_lr=spec.max_lr, total_steps=total_steps, pct_start=spec.pct_start,
            anneal_strategy=spec.anneal, cycle_momentum=False,
        )
        return Scheduler(cycle, per_step=True)
    per_step = spec.unit == "step"
    run = total_steps if per_step else epochs
    if spec.type == "step":
        scheduler = lr_scheduler.StepLR(optimizer, spec.step_size, gamma=spec.gamma)
    elif spec.type == "multistep":
        scheduler = lr_scheduler.MultiStepLR(optimizer, spec.milestones, gamma=spec.gamma)
    elif spec.type == "exponential":
        scheduler = lr_scheduler.ExponentialLR(optimizer, spec.gamma)
    elif spec.type == "cosine":
        scheduler = lr_scheduler.CosineAnnealingLR(optimizer, spec.t_max or run, spec.eta_min)
    elif spec.type == "warmup":
        factors = [warmup_factor(spec, run, group["lr"]) for group in optimizer.param_groups]
        scheduler = lr_scheduler.LambdaLR(optimizer, factors)
    else:
        raise ValueError(f"unknown schedule {spec.type!r}")  # the spec's union rules this out
    return Scheduler(scheduler, per_step=per_step)


def warmup_factor(spec: WarmupSchedule, run: int, base_lr: float) -> Callable[[int], float]:
    """lr / base_lr at unit t (0-based) of a run of `run` units: linear from first_factor to
    1 over `warmup_length` units, then `then` down towards eta_min over the rest of the run."""
    floor = spec.eta_min / base_lr
    decay = max(1, run - spec.warmup_length)

    def factor(t: int) -> float:
        if t < spec.warmup_length:
            return spec.first_factor + (1.0 - spec.first_factor) * t / spec.warmup_length
        progress = min(1.0, (t - spec.warmup_length) / decay)
        if spec.then == "constant":
            return 1.0
        if spec.then == "linear":
            return floor + (1.0 - floor) * (1.0 - progress)
        return floor + (1.0 - floor) * (1.0 + math.cos(math.pi * progress)) / 2

    return factor
