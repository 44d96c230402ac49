"""The range test's loop (worker/lr_find.py) on the CPU with a toy network and a list as its
only callback: against the same test written as a plain PyTorch loop, its stop on a
blow-up, and a stop on request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.jobspec import JobSpec
from core.lr_find import rate_at
from models.build import build_model
from models.losses import build_loss
from worker.data import prepare_data
from worker.lr_find import find_learning_rate
from worker.optim import build_optimizer
from worker.state import LoopState, Point
from worker.train import Preempted

CPU = torch.device("cpu")


@dataclass
class ListSink:
    points: list[Point] = field(default_factory=list)
    progress: list[tuple[int, int, int, int]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def on_points(self, state: LoopState, points: list[Point]) -> None:
        self.points.extend(points)
        self.progress.append((state.epoch, state.epochs, state.step, state.total_steps))

    def on_epoch_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        self.events.append("epoch_end")

    def on_train_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        self.events.append("train_end")

    def on_preempt(self, state: LoopState) -> None:
        self.events.append("preempt")

    def on_exit(self, state: LoopState, error: BaseException | None) -> None:
        self.events.append(f"exit {type(error).__name__ if error else None}")
        self.final = (state.step, state.total_steps)
        self.final_epochs = state.epochs

    def series(self, name: str) -> list[float]:
        return [p.value for p in self.points if p.name == name]


def spirals_test(lr_find: dict[str, Any] | None = None, **optimizer: Any) -> dict:
    return {
        "mode": "lr_find",
        "dataset": {"name": "spirals", "val_fraction": 0.1},
        "model": {"layers": [{"type": "linear", "out_features": 16}, {"type": "relu"},
                             {"type": "linear", "out_features": 3}]},
        "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9, **optimizer},
        "training": {"epochs": 1, "batch_size": 64, "seed": 0},
        **({"lr_find": lr_find} if lr_find is not None else {}),
    }


def run_test(job: dict, should_stop=None, sink: ListSink | None = None):
    spec = JobSpec.model_validate(job)
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, CPU)
    model, _ = build_model(spec.model, data.input_shape)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(spec, model)
    sink = sink or ListSink()
    report = find_learning_rate(spec, model, optimizer, build_loss(spec.loss), data, [sink],
                                should_stop=should_stop)
    return spec, data, initial, sink, report


def test_the_loop_matches_a_plain_pytorch_range_test() -> None:
    # 40 steps over an epoch of 17 batches: the split is cycled, reshuffled on each pass.
    spec, data, initial, sink, report = run_test(
        spirals_test({"start_lr": 1e-4, "end_lr": 1.0, "steps": 40, "stop_factor": None}))
    ref = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
    ref.load_state_dict({k.removeprefix("layers."): v for k, v in initial.items()})
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    n = len(data.x_train)
    shuffle = torch.Generator().manual_seed(0)
    starts = list(range(0, n, 64))
    raw, lrs, order = [], [], None
    for i in range(40):
        if i % len(starts) == 0:
            order = torch.randperm(n, generator=shuffle)
        lr = 1e-4 * (1.0 / 1e-4) ** (i / 39)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = order[starts[i % len(starts)]:starts[i % len(starts)] + 64]
        loss = F.cross_entropy(ref(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        raw.append(loss.item())
        lrs.append(lr)
    assert len(starts) == 17  # so the test does cycle
    assert sink.series("lr_find/loss_raw") == pytest.approx(raw, rel=1e-6)
    assert sink.series("lr") == pytest.approx(lrs, rel=1e-12)
    assert [p.step for p in sink.points if p.name == "lr"] == list(range(1, 41))
    assert {p.epoch for p in sink.points} == {1, 2, 3}
    assert sink.progress[-1] == (3, 3, 40, 40)
    assert report.points == 40 and report.stopped == "end of range"
    assert report.suggested_lr == report.suggestions["valley"] is not None
    assert sink.events == ["exit None"]  # no epoch ends, no checkpoints


def test_a_blow_up_stops_the_test_at_four_times_the_best_smoothed_loss() -> None:
    _, _, _, sink, report = run_test(spirals_test({"end_lr": 1000.0}))
    smoothed = sink.series("lr_find/loss")
    assert 5 < report.points < 100 and len(smoothed) == report.points
    assert smoothed[-1] > 4 * min(smoothed) and all(
        value <= 4 * min(smoothed[:i + 1]) for i, value in enumerate(smoothed[:-1]))
    last_lr = sink.series("lr")[-1]
    assert last_lr == pytest.approx(rate_at(report.points - 1, 1e-7, 1000.0, 100))
    assert report.stopped.startswith(f"diverged at lr {last_lr:.3g} ")
    assert sink.final == (report.points, report.points)  # progress ends where the test did
    assert sink.final_epochs == sink.points[-1].epoch
    assert report.suggested_lr is not None and report.suggested_lr < last_lr


def test_a_stop_request_preempts_without_a_report() -> None:
    calls, sink = iter(range(1000)), ListSink()
    with pytest.raises(Preempted, match="stopped at step 7 of the range test"):
        run_test(spirals_test(), should_stop=lambda: next(calls) >= 7, sink=sink)
    # The points of the 7 steps taken were handed on before the stop, and the sink flushes
    # them at on_preempt and on_exit.
    assert [p.step for p in sink.points if p.name == "lr"] == list(range(1, 8))
    assert sink.events == ["preempt", "exit Preempted"]


def test_a_spec_in_train_mode_is_refused() -> None:
    job = spirals_test()
    job["mode"] = "train"
    with pytest.raises(ValueError, match="mode lr_find"):
        run_test(job)
