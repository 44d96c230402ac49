"""Every way out of the training loop (its end, a stop, a divergence, an exception) goes
through the callbacks' on_exit with the state where the loop stopped, so that a sink that
buffers (MetricSink) writes what it holds. The loop runs on the CPU with in-memory sinks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from core.jobspec import JobSpec
from models.build import build_model
from models.losses import build_loss
from tests.test_train_loop import CPU, DIVERGING, ListSink, spirals_job
from worker.data import prepare_data
from worker.optim import build_optimizer
from worker.state import LoopState, Point
from worker.train import Preempted, TrainingDiverged, train


@dataclass
class BufferedSink(ListSink):
    """Like MetricSink: points are held until a write, and only on_exit writes them here."""

    held: list[Point] = field(default_factory=list)
    written: list[Point] = field(default_factory=list)
    exits: list[tuple[int, int, BaseException | None]] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)

    def on_points(self, state: LoopState, points: list[Point]) -> None:
        super().on_points(state, points)
        self.held.extend(points)

    def on_train_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        super().on_train_end(state, metrics)
        self.hooks.append("train_end")

    def on_preempt(self, state: LoopState) -> None:
        self.hooks.append("preempt")

    def on_exit(self, state: LoopState, error: BaseException | None) -> None:
        self.hooks.append("exit")
        self.exits.append((state.step, state.epoch, error))
        self.written.extend(self.held)
        self.held.clear()


@dataclass
class FailingAt(ListSink):
    """A callback that raises at a given step, as a crash inside the loop would."""

    step: int = 0
    error: Exception = field(default_factory=lambda: RuntimeError("boom"))

    def on_points(self, state: LoopState, points: list[Point]) -> None:
        if state.step >= self.step:
            raise self.error


def _run(job: dict, *sinks: Any, **kwargs: Any) -> None:
    """What worker/child.py does, minus the database, with these callbacks."""
    spec = JobSpec.model_validate(job)
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, CPU)
    model, _ = build_model(spec.model, data.input_shape)
    train(spec, model, build_optimizer(spec, model), build_loss(spec.loss), data, list(sinks),
          **kwargs)


def test_a_diverging_run_hands_every_point_and_its_last_step_to_on_exit() -> None:
    sink = BufferedSink()
    with pytest.raises(TrainingDiverged) as caught:
        _run(DIVERGING, sink)
    step = int(str(caught.value).split("at step ")[1].split(":")[0])
    assert len(sink.exits) == 1
    at_step, _, error = sink.exits[0]
    assert error is caught.value
    assert at_step == step  # the progress the job shows: where it blew up
    written = [p.step for p in sink.written if p.name == "train_loss_step"]
    assert written, "no point was written on the way out"
    assert written == [p.step for p in sink.step_points()]  # nothing held back
    assert written[-1] < step and written == sorted(set(written))
    assert sink.held == []


def test_an_exception_in_the_loop_still_writes_what_was_held() -> None:
    sink = BufferedSink()
    crash = FailingAt(step=7)
    with pytest.raises(RuntimeError, match="boom"):
        _run(spirals_job(log_every_steps=1), sink, crash)
    assert [(step, error) for step, _, error in sink.exits] == [(7, crash.error)]
    assert [p.step for p in sink.written if p.name == "train_loss_step"] == list(range(1, 8))


def test_a_stop_checkpoints_then_exits_at_the_step_it_stopped() -> None:
    sink = BufferedSink()

    def three_steps_into_epoch_two() -> bool:
        steps = [p for p in sink.step_points() if p.epoch == 2]
        return len(steps) >= 3

    with pytest.raises(Preempted):
        _run(spirals_job(log_every_steps=1), sink, should_stop=three_steps_into_epoch_two)
    assert sink.hooks == ["preempt", "exit"]
    step, epoch, error = sink.exits[0]
    last = sink.step_points()[-1]
    assert (step, epoch) == (last.step, 2) and isinstance(error, Preempted)
    steps = [p.step for p in sink.written if p.name == "train_loss_step"]
    assert steps == list(range(1, step + 1))


def test_the_end_of_a_run_exits_once_after_train_end() -> None:
    sink = BufferedSink()
    _run(spirals_job(), sink)
    assert sink.hooks == ["train_end", "exit"]
    assert sink.exits == [(sink.state.step, sink.state.epoch, None)]
    assert sink.written == sink.points and sink.held == []


def test_a_failing_on_exit_does_not_hide_the_error_that_ended_the_loop() -> None:
    class BrokenExit(ListSink):
        def on_exit(self, state: LoopState, error: BaseException | None) -> None:
            raise OSError("disk full")

    sink = BufferedSink()
    with pytest.raises(TrainingDiverged):
        _run(DIVERGING, BrokenExit(), sink)
    assert len(sink.exits) == 1  # the callbacks after the broken one still ran


def test_a_failing_on_exit_after_a_clean_end_is_raised() -> None:
    class BrokenExit(ListSink):
        def on_exit(self, state: LoopState, error: BaseException | None) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _run(spirals_job(epochs=1), BrokenExit())


def test_a_validation_loss_that_blows_up_between_loss_checks_ends_the_run_as_diverged() -> None:
    """Evaluated every step, the training loss checked only at the epoch's end: the
    validation loss is the first to see the blow-up. No non-finite point may reach a sink
    (MetricSink's summary is JSON, which cannot hold one)."""
    sink = BufferedSink()
    job = {**DIVERGING, "training": {"epochs": 3, "batch_size": 64, "log_every_steps": 1000,
                                     "eval_every_steps": 1}}
    with pytest.raises(TrainingDiverged,
                       match=r"^diverged at step \d+: the validation loss became (inf|nan);"):
        _run(job, sink)
    assert all(math.isfinite(p.value) for p in sink.points), [
        p for p in sink.points if not math.isfinite(p.value)][:3]
    step = int(str(sink.exits[0][2]).split("at step ")[1].split(":")[0])
    assert sink.exits[0][0] == step
    assert [p.step for p in sink.written if p.name == "val_loss"] == list(range(1, step))
