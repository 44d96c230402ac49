"""Interrupted runs for the resume-equality tests: the same job trained straight through, and
stopped at a step, checkpointed, then resumed in a "fresh process" (every generator
scrambled first). What the tests assert on the two is theirs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from core.jobspec import JobSpec
from models.build import build_model
from models.losses import build_loss
from tests.test_train_loop import CPU, ListSink
from worker.checkpoints import (
    checkpoint_state,
    load_checkpoint,
    restore_loop_state,
    write_atomically,
)
from worker.data import TrainData, prepare_data
from worker.optim import build_optimizer
from worker.schedules import Scheduler
from worker.state import LoopState, Point
from worker.train import Preempted, build_run_scheduler, plan_run, train


@dataclass
class Sink(ListSink):
    """The loop tests' in-memory sink, which also checkpoints when the loop is stopped."""

    step: int = 0
    checkpoint: Path | None = None
    spec: dict | None = None
    normalization: dict | None = None

    def on_points(self, state: LoopState, points: list[Point]) -> None:
        super().on_points(state, points)
        self.step = state.step

    def on_preempt(self, state: LoopState) -> None:
        payload = checkpoint_state(state, self.spec, self.normalization, {})
        write_atomically(payload, self.checkpoint)

    def series(self, name: str) -> list[tuple[int, float]]:
        return [(p.step, p.value) for p in self.points if p.name == name]


def start_run(spec: JobSpec, sink: Sink
          ) -> tuple[TrainData, nn.Module, torch.optim.Optimizer, Scheduler]:
    """What worker/child.py does before training: seed, data, model, optimizer, scheduler."""
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, CPU)
    model, _ = build_model(spec.model, data.input_shape)
    optimizer = build_optimizer(spec, model)
    scheduler = build_run_scheduler(spec, optimizer, plan_run(len(data.x_train), spec.training))
    sink.spec, sink.normalization = spec.model_dump(mode="json"), data.normalization
    return data, model, optimizer, scheduler


@dataclass
class Interrupted:
    straight: Sink  # the uninterrupted run
    straight_model: nn.Module
    first: Sink  # the run stopped at stop_at
    second: Sink  # its resumption
    resumed_model: nn.Module
    resumed_from: int  # the step the checkpoint held

    def assert_same_weights(self) -> None:
        for key, value in self.straight_model.state_dict().items():
            assert torch.equal(self.resumed_model.state_dict()[key], value), key

    def joined(self, name: str) -> list[tuple[int, float]]:
        """The series as the two attempts logged it, the first up to the checkpoint."""
        kept = [p for p in self.first.series(name) if p[0] <= self.resumed_from]
        return kept + self.second.series(name)


def run_interrupted(spec: JobSpec, stop_at: int, tmp_path: Path) -> Interrupted:
    straight = Sink()
    data, straight_model, optimizer, scheduler = start_run(spec, straight)
    train(spec, straight_model, optimizer, build_loss(spec.loss), data, [straight],
          scheduler=scheduler)

    first = Sink(checkpoint=tmp_path / "ckpt.pt")
    data, model, optimizer, scheduler = start_run(spec, first)
    with pytest.raises(Preempted):
        train(spec, model, optimizer, build_loss(spec.loss), data, [first], scheduler=scheduler,
              should_stop=lambda: first.step >= stop_at)
    torch.manual_seed(12345)  # a fresh process: the checkpoint must put every generator back

    second = Sink()
    data, resumed_model, optimizer, scheduler = start_run(spec, second)
    resume = restore_loop_state(load_checkpoint(first.checkpoint), resumed_model, optimizer,
                                CPU, scheduler)
    resumed_from = resume.step  # the loop advances it
    train(spec, resumed_model, optimizer, build_loss(spec.loss), data, [second], resume=resume)
    return Interrupted(straight, straight_model, first, second, resumed_model, resumed_from)
