"""The loop's options, each against a direct reference: gradient accumulation against one big
batch, max_steps, evaluation every N epochs or steps, early stopping (and its resume), the L1
penalty and gradient clipping against torch written by hand, mixed precision and compile."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.jobspec import JobSpec, validate_job
from core.settings import Settings
from models.build import SpecError, build_model
from models.losses import build_loss
from tests.conftest import wait_for_state
from tests.resume import Sink, run_interrupted, start_run
from tests.test_train_loop import run_job
from worker.checkpoints import load_checkpoint, restore_loop_state
from worker.data import prepare_data
from worker.optim import build_optimizer
from worker.train import Preempted, plan_run, train

CPU = torch.device("cpu")


def job(training: dict | None = None, **sections: Any) -> dict:
    """Spirals with a small MLP and plain SGD: no dropout, no batchnorm, so that runs can be
    compared weight for weight."""
    return {
        "dataset": {"name": "spirals", "val_fraction": 0.1},
        "model": {"layers": [
            {"type": "linear", "out_features": 16}, {"type": "tanh"},
            {"type": "linear", "out_features": 3},
        ]},
        "optimizer": {"type": "sgd", "lr": 0.1},
        "training": {"epochs": 2, "batch_size": 64, "seed": 0, **(training or {})},
        **sections,
    }


def names_at(sink: Sink, name: str) -> list[int]:
    return [p.step for p in sink.points if p.name == name]


# --- gradient accumulation and max_steps --------------------------------------------------------


def test_accumulated_batches_equal_one_big_batch() -> None:
    big = run_job(job({"batch_size": 64}))
    small = run_job(job({"batch_size": 16, "accumulate_batches": 4}))
    # 1080 training samples: 17 steps of 64 (the last 56) either way.
    assert plan_run(1080, small.spec.training).steps_per_epoch == 17
    assert names_at(big.sink, "train_loss") == names_at(small.sink, "train_loss") == [17, 34]
    for key, value in big.model.state_dict().items():
        torch.testing.assert_close(small.model.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    assert small.final["train_loss"] == pytest.approx(big.final["train_loss"], rel=1e-5)


def test_max_steps_ends_the_run_mid_epoch() -> None:
    run = run_job(job({"epochs": 10, "max_steps": 25},
                      schedule={"type": "one_cycle", "max_lr": 0.5}))
    steps = names_at(run.sink, "train_loss_step")
    assert steps[-1] == 25
    # The first epoch's metrics at step 17; the second, cut short, at step 25, then the test.
    assert names_at(run.sink, "train_loss") == [17, 25]
    assert names_at(run.sink, "val_loss") == [17, 25]
    assert names_at(run.sink, "test_accuracy") == [25]
    assert run.sink.state.total_steps == 25 and run.sink.state.epochs == 2
    # One-cycle spans the 25 steps the run has, not the 170 that 10 epochs would be.
    rates = [p.value for p in run.sink.points if p.name == "lr"]
    assert max(rates) == pytest.approx(0.5, rel=0.05)


def test_one_cycle_over_max_steps_matches_torch() -> None:
    spec = JobSpec.model_validate(job({"epochs": 10, "max_steps": 25, "log_every_steps": 1},
                                      schedule={"type": "one_cycle", "max_lr": 0.5}))
    run = run_job(spec.model_dump())
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    reference = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.5, total_steps=25,
                                                    cycle_momentum=False)
    want = []
    for _ in range(25):
        want.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        reference.step()
    assert [p.value for p in run.sink.points if p.name == "lr"] == want


# --- when to evaluate ---------------------------------------------------------------------------


def test_evaluation_every_n_epochs_and_after_the_last() -> None:
    run = run_job(job({"epochs": 5, "eval_every_epochs": 2}))
    assert names_at(run.sink, "train_loss") == [17, 34, 51, 68, 85]
    assert names_at(run.sink, "val_loss") == [34, 68, 85]


def test_evaluation_every_n_steps_logs_each_point_once() -> None:
    run = run_job(job({"epochs": 2, "eval_every_steps": 10}))
    assert names_at(run.sink, "val_loss") == [10, 20, 30, 34]
    keys = [(p.name, p.step) for p in run.sink.points]
    assert len(keys) == len(set(keys))
    # The epoch's record (for checkpoints and reduce_on_plateau) carries the latest evaluation.
    assert "val_loss" in run.sink.epochs[0]


# --- early stopping -----------------------------------------------------------------------------


def overfitting_job(**stopping: Any) -> dict:
    """Few samples, a wide net, a high rate: validation loss turns up within a few epochs."""
    return {
        "dataset": {"name": "spirals", "n_samples": 200, "noise": 0.6, "val_fraction": 0.3},
        "model": {"layers": [{"type": "linear", "out_features": 256}, {"type": "relu"},
                             {"type": "linear", "out_features": 256}, {"type": "relu"},
                             {"type": "linear", "out_features": 3}]},
        "optimizer": {"type": "adam", "lr": 0.01},
        "training": {"epochs": 200, "batch_size": 32, "seed": 0,
                     "early_stopping": {"patience": 5, **stopping}},
    }


def test_early_stopping_stops_and_restores_the_best_weights() -> None:
    run = run_job(overfitting_job())
    val = [(p.step, p.epoch, p.value) for p in run.sink.points if p.name == "val_loss"]
    best_step, best_epoch, best = min(val, key=lambda v: v[2])
    last_epoch = val[-1][1]
    assert last_epoch < 200, "never stopped"
    assert last_epoch == best_epoch + 5  # five evaluations without improvement
    assert all(v > best for _, e, v in val if e > best_epoch)
    # The final weights are the best evaluation's: their validation loss is the best one.
    assert run.final["val_loss"] == pytest.approx(best, rel=1e-6)
    assert run.sink.state.total_steps == run.sink.state.step
    assert any(f"best {best:.6g} at epoch {best_epoch}" in n for n in run.sink.state.notes)


def test_early_stopping_without_restore_keeps_the_last_weights() -> None:
    run = run_job(overfitting_job(restore_best=False))
    val = [p.value for p in run.sink.points if p.name == "val_loss"]
    assert run.final["val_loss"] == val[-1] > min(val)


def test_early_stopping_min_delta_and_mode() -> None:
    strict = run_job(overfitting_job(min_delta=10.0))  # nothing ever improves by 10
    assert max(p.epoch for p in strict.sink.points if p.name == "val_loss") == 6
    by_accuracy = run_job(overfitting_job(monitor="val_accuracy"))
    assert by_accuracy.sink.state.stopper.mode == "max"


def test_early_stopping_resumes_where_it_left_off(tmp_path: Path) -> None:
    runs = run_interrupted(JobSpec.model_validate(overfitting_job()), 20, tmp_path)
    assert runs.first.step == 20 < runs.straight.state.step
    assert runs.second.state.step == runs.straight.state.step  # stopped at the same step
    runs.assert_same_weights()
    assert runs.second.state.notes == runs.straight.state.notes


# --- L1 and clipping, against torch by hand -----------------------------------------------------


def one_step_by_hand(spec: JobSpec, extra: Any) -> tuple[nn.Module, nn.Module, dict]:
    """Our loop for one step, and the same step written in torch; `extra(model, loss)` adds
    the penalty or the clipping to the hand-written one and returns what it measured."""
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, CPU)
    ours, _ = build_model(spec.model, data.input_shape)
    theirs = copy.deepcopy(ours)
    sink = Sink()
    train(spec, ours, build_optimizer(spec, ours), build_loss(spec.loss), data, [sink])

    order = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(0))
    idx = order[:spec.training.batch_size]
    sgd = torch.optim.SGD(theirs.parameters(), lr=0.1)
    loss = F.cross_entropy(theirs(data.x_train[idx]), data.y_train[idx])
    measured = extra(theirs, loss)
    sgd.step()
    return ours, theirs, {"sink": sink, **measured}


def test_l1_penalty_matches_torch_and_is_logged_apart() -> None:
    spec = JobSpec.model_validate(job({"max_steps": 1, "log_every_steps": 1},
                                      regularization={"l1": 0.01}))

    def penalise(model: nn.Module, loss: torch.Tensor) -> dict:
        weights = [model.layers[0].weight, model.layers[2].weight]  # not the biases
        penalty = 0.01 * sum(w.abs().sum() for w in weights)
        (loss + penalty).backward()
        return {"penalty": penalty.item(), "loss": loss.item()}

    ours, theirs, got = one_step_by_hand(spec, penalise)
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=1e-6, atol=1e-7)
    points = {p.name: p.value for p in got["sink"].points if p.step == 1}
    assert points["l1_penalty"] == pytest.approx(got["penalty"], rel=1e-6)
    assert points["train_loss_step"] == pytest.approx(got["loss"], rel=1e-6)


@pytest.mark.parametrize("by", ["norm", "value"])
def test_gradient_clipping_matches_torch_and_logs_the_norm_before(by: str) -> None:
    spec = JobSpec.model_validate(job({"max_steps": 1, "log_every_steps": 1},
                                      regularization={"clip_grad": {"by": by, "max": 0.05}}))

    def clip(model: nn.Module, loss: torch.Tensor) -> dict:
        loss.backward()
        norm = torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in model.parameters()])).item()
        if by == "norm":
            nn.utils.clip_grad_norm_(model.parameters(), 0.05)
        else:
            nn.utils.clip_grad_value_(model.parameters(), 0.05)
        return {"norm": norm}

    ours, theirs, got = one_step_by_hand(spec, clip)
    assert got["norm"] > 0.05  # the clipping did something
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=1e-6, atol=1e-7)
    logged = [p.value for p in got["sink"].points if p.name == "grad_norm"]
    assert logged == [pytest.approx(got["norm"], rel=1e-5)]


# --- precision and compile ----------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_close_to_fp32(precision: str) -> None:
    fp32 = run_job(job({"epochs": 3}))
    mixed = run_job(job({"epochs": 3, "precision": precision}))
    assert mixed.final["train_loss"] == pytest.approx(fp32.final["train_loss"], rel=0.05)
    assert mixed.final["test_accuracy"] > 0.5
    assert (mixed.sink.state.scaler is not None) == (precision == "fp16")
    assert not mixed.sink.state.notes  # the CPU can do both


def test_fp16_scaler_state_is_checkpointed_and_restored(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(job({"epochs": 3, "precision": "fp16"}))
    first = Sink(checkpoint=tmp_path / "ckpt.pt")
    data, model, optimizer, scheduler = start_run(spec, first)
    with pytest.raises(Preempted):
        train(spec, model, optimizer, build_loss(spec.loss), data, [first], scheduler=scheduler,
              should_stop=lambda: first.step >= 20)
    saved = load_checkpoint(first.checkpoint)
    assert saved["scaler"] is not None and saved["scaler"]["scale"] > 0
    data, model, optimizer, scheduler = start_run(spec, Sink())
    resume = restore_loop_state(saved, model, optimizer, CPU, scheduler)
    assert resume.restored["scaler"]["scale"] == saved["scaler"]["scale"]


def test_compile_trains_like_eager() -> None:
    eager = run_job(job({"epochs": 1}))
    compiled = run_job(job({"epochs": 1, "compile": True}))
    assert not compiled.sink.state.notes, compiled.sink.state.notes
    for key, value in eager.model.state_dict().items():
        torch.testing.assert_close(compiled.model.state_dict()[key], value, rtol=1e-4,
                                   atol=1e-5)


def test_compile_failure_falls_back_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(model: nn.Module, **kwargs: Any) -> nn.Module:
        raise RuntimeError("no C++ compiler on this worker")

    monkeypatch.setattr(torch, "compile", refuse)
    eager = run_job(job({"epochs": 1}))
    fallback = run_job(job({"epochs": 1, "compile": True}))
    assert fallback.sink.state.notes == [
        "training.compile: torch.compile failed (RuntimeError: no C++ compiler on this "
        "worker); trained uncompiled"]
    for key, value in eager.model.state_dict().items():
        assert torch.equal(fallback.model.state_dict()[key], value), key


# --- impossible combinations --------------------------------------------------------------------


@pytest.mark.parametrize(("overrides", "path", "message"), [
    ({"dataset": {"name": "spirals", "val_fraction": 0.0},
      "training": {"early_stopping": {}}}, "training.early_stopping", "val_fraction"),
    ({"training": {"early_stopping": {"monitor": "val_rmse"}}},
     "training.early_stopping.monitor", "val_loss"),
])
def test_early_stopping_checked_against_the_job(overrides: dict, path: str,
                                                message: str) -> None:
    spec = JobSpec.model_validate({**job(), **overrides})
    with pytest.raises(SpecError) as caught:
        validate_job(spec, Settings())
    assert caught.value.field == path and message in caught.value.message


@pytest.mark.parametrize(("dataset", "loss", "out", "monitor", "mode"), [
    ("sine", "mse", 1, "val_r2", "max"), ("sine", "mse", 1, "val_mae", "min"),
    ("zones", "bce_with_logits", 4, "val_exact_match", "max"),
    ("spirals", "cross_entropy", 3, "val_accuracy", "max"),
])
def test_every_recorded_validation_metric_can_be_watched(dataset: str, loss: str, out: int,
                                                         monitor: str, mode: str) -> None:
    body = job({"early_stopping": {"monitor": monitor}},
               schedule={"type": "reduce_on_plateau", "monitor": monitor})
    body["dataset"] = {"name": dataset}
    body["loss"] = {"type": loss}
    body["model"]["layers"][-1]["out_features"] = out
    spec = JobSpec.model_validate(body)
    validate_job(spec, Settings())
    assert spec.training.early_stopping.resolved_mode == spec.schedule.resolved_mode == mode


def test_bad_training_options_are_422s_naming_the_field(client: Any) -> None:
    cases = [
        ({"training": {"accumulate_batches": 0}}, "training.accumulate_batches"),
        ({"training": {"max_steps": 0}}, "training.max_steps"),
        ({"training": {"precision": "fp8"}}, "training.precision"),
        ({"training": {"early_stopping": {"patience": 0}}}, "training.early_stopping.patience"),
        ({"regularization": {"l1": -1}}, "regularization.l1"),
        ({"regularization": {"clip_grad": {"by": "norm", "max": 0}}},
         "regularization.clip_grad.max"),
        ({"regularization": {"clip_grad": {"by": "size", "max": 1}}},
         "regularization.clip_grad.by"),
        ({"dataset": {"name": "spirals", "val_fraction": 0.0},
          "training": {"early_stopping": {}}}, "training.early_stopping"),
        ({"training": {"early_stopping": {"monitor": "val_rmse"}}},
         "training.early_stopping.monitor"),
    ]
    for overrides, field in cases:
        body = job()
        for section, values in overrides.items():
            body[section] = {**body.get(section, {}), **values}
        for path in ("/v1/jobs/validate", "/v1/jobs"):
            response = client.post(path, json=body)
            assert response.status_code == 422, (overrides, response.text)
            assert response.json()["detail"][0]["field"] == field, response.json()


# --- through the service ------------------------------------------------------------------------


def test_early_stopping_through_the_api(client: Any, worker: Any, tmp_path: Path) -> None:
    response = client.post("/v1/jobs", json=overfitting_job())
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    done = wait_for_state(client, job_id, {"succeeded", "failed", "cancelled"})
    assert done["state"] == "succeeded", done["error"]
    notes = done["summary"]["notes"]
    assert len(notes) == 1 and notes[0].startswith("early stopping at epoch"), notes
    assert done["progress"]["step"] == done["progress"]["total_steps"]
    assert done["progress"]["epoch"] < 200

    val = client.get(f"/v1/jobs/{job_id}/metrics", params={"names": "val_loss"}).json()
    values = val["series"]["val_loss"]["value"]
    best = done["summary"]["best"]["val_loss"]
    assert best["value"] == min(values)
    # The final checkpoint holds the restored best weights: evaluated, they give the best loss.
    checkpoints = client.get(f"/v1/jobs/{job_id}/checkpoints").json()
    final = max(checkpoints, key=lambda c: c["step"])
    assert final["metrics"]["val_loss"] == pytest.approx(best["value"], rel=1e-5)
    path = tmp_path / "final.pt"
    path.write_bytes(client.get(f"/v1/jobs/{job_id}/checkpoints/{final['id']}/download").content)
    saved = torch.load(path, weights_only=True)
    assert saved["early_stopping"]["best_step"] == best["step"]
    for key, value in saved["early_stopping"]["best_weights"].items():
        assert torch.equal(saved["model"][key], value), key
