"""Issue 14, fault D: a stop inside a log window (log_every_steps 10, a stop at step 13) must
resume to the same bits as an uninterrupted run. The loop folded the window's first part
into its sums before checkpointing and the rest after resuming; two roundings instead of
one left one train_loss_step an ulp off. The unfolded batches now travel in the checkpoint
and the window is folded once, in the same order, whether or not it was interrupted."""

from __future__ import annotations

import itertools

import pytest
import torch

from core.jobspec import JobSpec
from models.losses import build_loss
from tests.resume import Sink, start_run
from tests.test_train_loop import CPU, spirals_job
from worker.checkpoints import load_checkpoint, restore_loop_state
from worker.train import Preempted, train


@pytest.mark.parametrize("stop_at", [13, 17, 25])  # inside a window; an epoch's end; epoch 2
def test_a_stop_inside_a_log_window_resumes_bit_exact(stop_at: int, tmp_path) -> None:
    spec = JobSpec.model_validate(spirals_job(batch_size=16, log_every_steps=10, epochs=3))
    straight = Sink()
    data, straight_model, optimizer, scheduler = start_run(spec, straight)
    train(spec, straight_model, optimizer, build_loss(spec.loss), data, [straight],
          scheduler=scheduler)

    first = Sink(checkpoint=tmp_path / "ckpt.pt")
    data, model, optimizer, scheduler = start_run(spec, first)
    asked = itertools.count(1)  # the loop asks once after every step (and at an epoch's end)
    with pytest.raises(Preempted):
        train(spec, model, optimizer, build_loss(spec.loss), data, [first],
              scheduler=scheduler, should_stop=lambda: next(asked) >= stop_at)
    torch.manual_seed(12345)  # a fresh process: the checkpoint must put every generator back

    second = Sink()
    data, resumed_model, optimizer, scheduler = start_run(spec, second)
    resume = restore_loop_state(load_checkpoint(first.checkpoint), resumed_model, optimizer,
                                CPU, scheduler)
    resumed_from = resume.step
    assert resumed_from % 10 or stop_at == 17, "the stop must fall inside a window"
    train(spec, resumed_model, optimizer, build_loss(spec.loss), data, [second], resume=resume)

    for name in ("train_loss_step", "train_loss", "train_accuracy", "val_loss"):
        joined = [p for p in first.series(name) if p[0] <= resumed_from] + second.series(name)
        assert joined == straight.series(name), name  # bit for bit: floats compared with ==
    for key, value in straight_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[key], value), key
