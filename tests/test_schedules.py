"""Learning-rate schedules against torch's own schedulers (or a hand formula for warm-up), in
the loop and across a resume.

Each schedule is stepped the way the loop steps it and its rates compared with the torch
scheduler stepped by hand; a run preempted mid-schedule and resumed from its checkpoint must
end with the same weights as one that was never stopped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.optim import lr_scheduler

from core.errors import pydantic_details
from core.jobspec import JobSpec, validate_job
from core.settings import Settings
from models.build import SpecError, build_model
from models.losses import build_loss
from tests.resume import Sink, run_interrupted, start_run
from tests.test_train_loop import spirals_job
from worker.checkpoints import (
    load_checkpoint,
    restore_loop_state,
)
from worker.data import prepare_data
from worker.optim import build_optimizer
from worker.schedules import build_scheduler
from worker.train import Preempted, steps_per_epoch, train

CPU = torch.device("cpu")
LR = 0.1
PER_EPOCH, EPOCHS = 3, 5


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=LR)


def ours(schedule: dict, metrics: list[dict[str, float]] | None = None,
         epochs: int = EPOCHS) -> list[float]:
    """The rate of every optimizer step, stepping our scheduler as the loop does."""
    spec = JobSpec.model_validate({**_job(), "schedule": schedule}).schedule
    optimizer = _optimizer()
    scheduler = build_scheduler(spec, optimizer, PER_EPOCH, epochs)
    rates = []
    for epoch in range(epochs):
        for _ in range(PER_EPOCH):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.after_step()
        scheduler.after_epoch(metrics[epoch] if metrics else {})
    return rates


def reference(make: Any, per_step: bool) -> list[float]:
    """The same with a torch scheduler built by `make(optimizer)` and stepped by hand."""
    optimizer = _optimizer()
    scheduler = make(optimizer)
    rates = []
    for _ in range(EPOCHS):
        for _ in range(PER_EPOCH):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if per_step:
                scheduler.step()
        if not per_step:
            scheduler.step()
    return rates


TOTAL = PER_EPOCH * EPOCHS
CASES = [
    ({"type": "constant"}, lambda o: lr_scheduler.LambdaLR(o, lambda _: 1.0), False),
    ({"type": "step", "step_size": 2, "gamma": 0.5},
     lambda o: lr_scheduler.StepLR(o, 2, gamma=0.5), False),
    ({"type": "step", "step_size": 4, "gamma": 0.5, "unit": "step"},
     lambda o: lr_scheduler.StepLR(o, 4, gamma=0.5), True),
    ({"type": "multistep", "milestones": [1, 3], "gamma": 0.3},
     lambda o: lr_scheduler.MultiStepLR(o, [1, 3], gamma=0.3), False),
    ({"type": "multistep", "milestones": [2, 7, 11], "unit": "step"},
     lambda o: lr_scheduler.MultiStepLR(o, [2, 7, 11], gamma=0.1), True),
    ({"type": "exponential", "gamma": 0.8},
     lambda o: lr_scheduler.ExponentialLR(o, 0.8), False),
    ({"type": "exponential", "gamma": 0.9, "unit": "step"},
     lambda o: lr_scheduler.ExponentialLR(o, 0.9), True),
    ({"type": "cosine", "eta_min": 0.01},
     lambda o: lr_scheduler.CosineAnnealingLR(o, EPOCHS, 0.01), False),
    ({"type": "cosine", "unit": "step"},
     lambda o: lr_scheduler.CosineAnnealingLR(o, TOTAL), True),
    ({"type": "cosine", "t_max": 2, "unit": "epoch"},
     lambda o: lr_scheduler.CosineAnnealingLR(o, 2), False),
    ({"type": "one_cycle", "max_lr": 1.0},
     lambda o: lr_scheduler.OneCycleLR(o, 1.0, total_steps=TOTAL, cycle_momentum=False), True),
    ({"type": "one_cycle", "max_lr": 0.5, "pct_start": 0.5, "anneal": "linear"},
     lambda o: lr_scheduler.OneCycleLR(o, 0.5, total_steps=TOTAL, pct_start=0.5,
                                       anneal_strategy="linear", cycle_momentum=False), True),
]


@pytest.mark.parametrize(("schedule", "make", "per_step"), CASES,
                         ids=[f"{c[0]['type']}-{i}" for i, c in enumerate(CASES)])
def test_schedule_follows_torch(schedule: dict, make: Any, per_step: bool) -> None:
    got, want = ours(schedule), reference(make, per_step)
    assert got == want
    if schedule["type"] != "constant":
        assert len(set(got)) > 1  # the schedule did change the rate


def _warmup_by_hand(t: int, run: int, warmup: int, start: float, then: str,
                    eta_min: float) -> float:
    if t < warmup:
        return LR * (start + (1 - start) * t / warmup)
    progress = (t - warmup) / (run - warmup)
    shape = {"constant": 1.0, "linear": 1 - progress,
             "cosine": (1 + math.cos(math.pi * progress)) / 2}[then]
    return LR if then == "constant" else eta_min + (LR - eta_min) * shape


@pytest.mark.parametrize("then", ["cosine", "linear", "constant"])
@pytest.mark.parametrize("unit", ["step", "epoch"])
def test_warmup_matches_the_formula(then: str, unit: str) -> None:
    warmup, start, eta_min = (4, 0.1, 0.01) if unit == "step" else (2, 0.0, 0.002)
    got = ours({"type": "warmup", "warmup_length": warmup, "start_factor": start, "then": then,
                "eta_min": eta_min, "unit": unit})
    if unit == "step":
        want = [_warmup_by_hand(t, TOTAL, warmup, start, then, eta_min) for t in range(TOTAL)]
    else:
        want = [_warmup_by_hand(t // PER_EPOCH, EPOCHS, warmup, start, then, eta_min)
                for t in range(TOTAL)]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert got[0] == pytest.approx(LR * start) and max(got) == pytest.approx(LR)


def test_reduce_on_plateau_waits_for_patience() -> None:
    losses = [1.0, 0.9, 0.95, 0.92, 0.91, 0.8, 0.85, 0.86, 0.87, 0.88]
    got = ours({"type": "reduce_on_plateau", "patience": 2, "factor": 0.5},
               [{"val_loss": v} for v in losses], epochs=len(losses))
    per_epoch = got[::PER_EPOCH]
    # Best 0.9 after epoch 2; epochs 3, 4 and 5 do not beat it; the third (> patience 2)
    # halves the rate for epoch 6. 0.8 is a new best; 7, 8, 9 fail to beat it: halved again.
    assert per_epoch == [LR] * 5 + [LR / 2] * 4 + [LR / 4]

    # The same as torch's scheduler fed the same losses.
    optimizer = _optimizer()
    plateau = lr_scheduler.ReduceLROnPlateau(optimizer, patience=2, factor=0.5)
    want = []
    for loss in losses:
        want.append(optimizer.param_groups[0]["lr"])
        plateau.step(loss)
    assert per_epoch == want


def test_reduce_on_plateau_infers_max_for_accuracy() -> None:
    spec = JobSpec.model_validate({**_job(), "schedule": {
        "type": "reduce_on_plateau", "monitor": "val_accuracy", "patience": 0}})
    assert spec.schedule.resolved_mode == "max"
    optimizer = _optimizer()
    scheduler = build_scheduler(spec.schedule, optimizer, PER_EPOCH, EPOCHS)
    for accuracy in (0.5, 0.6, 0.7, 0.8):  # rising accuracy is improvement
        scheduler.after_epoch({"val_accuracy": accuracy, "val_loss": 9.0})
    assert optimizer.param_groups[0]["lr"] == LR
    scheduler.after_epoch({"val_accuracy": 0.7})
    assert optimizer.param_groups[0]["lr"] == pytest.approx(LR * 0.1)
    explicit = JobSpec.model_validate({**_job(), "schedule": {
        "type": "reduce_on_plateau", "monitor": "val_accuracy", "mode": "min"}})
    assert explicit.schedule.resolved_mode == "min"


# --- validation -------------------------------------------------------------------------------


def _job(**overrides: Any) -> dict:
    """The loop tests' spirals job, three epochs, with top-level sections replaced."""
    return {**spirals_job(epochs=3), **overrides}


@pytest.mark.parametrize(
    ("schedule", "path"),
    [
        ({"type": "multistep", "milestones": [3, 2]}, "schedule.milestones"),
        ({"type": "multistep", "milestones": [2, 2]}, "schedule.milestones"),
        ({"type": "multistep", "milestones": []}, "schedule.milestones"),
        ({"type": "one_cycle", "max_lr": 0}, "schedule.max_lr"),
        ({"type": "one_cycle", "max_lr": -1}, "schedule.max_lr"),
        ({"type": "one_cycle", "max_lr": 1, "pct_start": 1}, "schedule.pct_start"),
        ({"type": "exponential", "gamma": 0}, "schedule.gamma"),
        ({"type": "exponential", "gamma": 1.5}, "schedule.gamma"),
        ({"type": "step", "step_size": 0}, "schedule.step_size"),
        ({"type": "cosine", "eta_min": -0.1}, "schedule.eta_min"),
        ({"type": "cosine", "unit": "batch"}, "schedule.unit"),
        ({"type": "warmup", "warmup_length": 0}, "schedule.warmup_length"),
        ({"type": "warmup", "warmup_length": 5, "then": "step"}, "schedule.then"),
        ({"type": "reduce_on_plateau", "factor": 1.0}, "schedule.factor"),
        ({"type": "reduce_on_plateau", "mode": "up"}, "schedule.mode"),
        ({"type": "cyclic"}, "schedule"),
        ({"type": "cosine", "T_max": 3}, "schedule.T_max"),
    ],
)
def test_invalid_schedule_names_the_field(schedule: dict, path: str) -> None:
    document = _job(schedule=schedule)
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(document)
    details = pydantic_details(caught.value.errors(), document)
    assert [d["field"] for d in details] == [path], details


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"schedule": {"type": "warmup", "warmup_length": 4, "unit": "epoch"}},
         "longer than the run"),
        ({"schedule": {"type": "warmup", "warmup_length": 52}}, "longer than the run"),
        ({"schedule": {"type": "reduce_on_plateau"},
          "dataset": {"name": "spirals", "val_fraction": 0}}, "val_fraction is 0"),
        ({"schedule": {"type": "reduce_on_plateau", "monitor": "val_rmse"}},
         "use val_loss or val_accuracy"),
        ({"schedule": {"type": "reduce_on_plateau", "monitor": "train_loss"}},
         "use val_loss or val_accuracy"),
    ],
)
def test_schedule_checked_against_the_run(overrides: dict, message: str) -> None:
    spec = JobSpec.model_validate(_job(**overrides))
    with pytest.raises(SpecError) as caught:
        validate_job(spec, Settings())
    assert caught.value.field.startswith("schedule.")
    assert message in caught.value.message


def test_schedules_that_fit_the_run_validate() -> None:
    # 3 epochs of 17 steps (estimated from 1080 samples in batches of 64): 51 steps.
    for schedule in ({"type": "warmup", "warmup_length": 51}, {"type": "warmup", "warmup_length": 3,
                                                         "unit": "epoch"},
                     {"type": "reduce_on_plateau", "monitor": "val_accuracy"}):
        validate_job(JobSpec.model_validate(_job(schedule=schedule)), Settings())
    regression = _job(dataset={"name": "sine"}, loss={"type": "mse"},
                      schedule={"type": "reduce_on_plateau", "monitor": "val_rmse"})
    regression["model"]["layers"][-1]["out_features"] = 1
    validate_job(JobSpec.model_validate(regression), Settings())


# --- in the loop --------------------------------------------------------------------------------


def test_the_loop_logs_the_rate_of_every_logged_step() -> None:
    spec = JobSpec.model_validate(_job(schedule={"type": "cosine", "unit": "step"},
                                       training={"epochs": 2, "batch_size": 64,
                                                 "log_every_steps": 3}))
    torch.manual_seed(0)
    data = prepare_data(spec, CPU)
    model, _ = build_model(spec.model, data.input_shape)
    sink = Sink()
    train(spec, model, build_optimizer(spec, model), build_loss(spec.loss), data, [sink])

    per_epoch = steps_per_epoch(len(data.x_train), 64)
    want = reference_rates(lambda o: lr_scheduler.CosineAnnealingLR(o, 2 * per_epoch),
                           0.05, 2 * per_epoch)
    lr = sink.series("lr")
    assert [s for s, _ in lr] == [s for s, _ in sink.series("train_loss_step")]
    assert [s for s, _ in lr] == [3, 6, 9, 12, 15, 17, 18, 21, 24, 27, 30, 33, 34]
    assert [v for _, v in lr] == [want[s - 1] for s, _ in lr]
    # Not also an epoch point at the epoch's last step; the epoch's metrics name its last rate.
    assert len({s for s, _ in lr}) == len(lr)
    assert [m["lr"] for m in sink.epochs] == [want[per_epoch - 1], want[2 * per_epoch - 1]]


def reference_rates(make: Any, lr: float, steps: int) -> list[float]:
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=lr)
    scheduler = make(optimizer)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


# --- resume -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stop_at", [25, 17], ids=["mid-epoch", "epoch-end"])
@pytest.mark.parametrize("schedule", [
    {"type": "cosine", "eta_min": 0.001},
    {"type": "step", "step_size": 7, "gamma": 0.5, "unit": "step"},
    {"type": "warmup", "warmup_length": 10, "then": "linear"},
    {"type": "reduce_on_plateau", "patience": 0, "threshold": 0.5},
], ids=lambda s: s["type"])
def test_resumed_run_equals_an_uninterrupted_one(schedule: dict, stop_at: int,
                                                 tmp_path: Path) -> None:
    spec = JobSpec.model_validate(_job(schedule=schedule, training={
        "epochs": 3, "batch_size": 64, "seed": 2, "log_every_steps": 1}))
    runs = run_interrupted(spec, stop_at, tmp_path)
    assert runs.resumed_from == stop_at
    runs.assert_same_weights()
    resumed = runs.joined("lr")
    assert resumed == runs.straight.series("lr")
    assert len({v for _, v in resumed}) > 1


def test_resuming_a_schedule_without_restoring_it_is_refused(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(_job(schedule={"type": "cosine"}, training={
        "epochs": 2, "batch_size": 64, "log_every_steps": 1}))
    first = Sink(checkpoint=tmp_path / "ckpt.pt")
    data, model, optimizer, scheduler = start_run(spec, first)
    with pytest.raises(Preempted):
        train(spec, model, optimizer, build_loss(spec.loss), data, [first], scheduler=scheduler,
              should_stop=lambda: first.step >= 5)
    data, model, optimizer, _ = start_run(spec, Sink())
    resume = restore_loop_state(load_checkpoint(first.checkpoint), model, optimizer, CPU)
    with pytest.raises(ValueError, match="restore_loop_state"):
        train(spec, model, optimizer, build_loss(spec.loss), data, [], resume=resume)
