"""The diagnosis on real short trainings through the training loop on the CPU, without a
service: the loop's own metric points (per-layer gradients, update ratios, activation
statistics) feed worker/diagnosis.py's callback, whose report lands in a Summary as the
metric sink's would. A fault must be named; its healthy twin, over 3 seeds, must raise
nothing."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from core.diagnosis import facts_from_spec
from core.jobspec import JobSpec
from core.run_plan import plan_run
from models.build import build_model
from models.losses import build_loss
from tests.conftest import load_example
from tests.test_train_loop import ListSink
from worker.activation_probe import ActivationProbe
from worker.callbacks import Summary
from worker.data import prepare_data
from worker.diagnosis import DiagnosisCallback
from worker.optim import build_optimizer
from worker.train import TrainingDiverged, train

CPU = torch.device("cpu")


def diagnose(job: dict) -> tuple[dict, str | None, ListSink]:
    """Train `job` as worker/child.py does, minus the database; returns summary.diagnosis,
    the divergence error (None if it trained through) and the points."""
    spec = JobSpec.model_validate(job)
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, CPU)
    model, _ = build_model(spec.model, data.input_shape)
    optimizer = build_optimizer(spec, model)
    facts = facts_from_spec(spec, task=data.task, num_classes=data.num_classes,
                            total_steps=plan_run(len(data.x_train), spec.training).total_steps)
    summary, sink = Summary(), ListSink()
    callback = DiagnosisCallback(facts, summary)
    error = None
    try:
        train(spec, model, optimizer, build_loss(spec.loss), data, [sink, callback])
    except TrainingDiverged as exc:
        error = str(exc)
    return summary.as_dict()["diagnosis"], error, sink


def names(report: dict) -> set[str]:
    return {f["name"] for f in report["findings"]}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("example", ["digits-mlp", "moons-bce"])
def test_healthy_examples_raise_nothing_over_seeds(example: str, seed: int) -> None:
    job = copy.deepcopy(load_example(example))
    job["training"] = {**job["training"], "seed": seed, "epochs": 10}
    job["resources"] = {"device": "cpu"}
    report, error, sink = diagnose(job)
    assert error is None
    assert report["final"] is True and report["findings"] == [], report
    assert report["step"] == sink.state.total_steps


def test_autotrainers_deep_sigmoid_demo_is_stuck_with_vanishing_gradients() -> None:
    """AutoTrainer's vanishing demo as a layer list: 8 x Dense(5, sigmoid) + Dense(1), Adam,
    on a two-class set (moons here)."""
    layers = [layer for _ in range(8) for layer in ({"type": "linear", "out_features": 5},
                                                    {"type": "sigmoid"})]
    job = {"dataset": {"name": "moons", "noise": 0.1},
           "model": {"layers": [*layers, {"type": "linear", "out_features": 1}]},
           "loss": {"type": "bce_with_logits"}, "optimizer": {"type": "adam", "lr": 0.001},
           "training": {"epochs": 8, "batch_size": 32, "seed": 0}}
    report, error, _ = diagnose(job)
    assert error is None
    assert names(report) == {"stuck_at_chance", "vanishing_gradients"}, report
    vanishing = next(f for f in report["findings"] if f["name"] == "vanishing_gradients")
    assert vanishing["data"]["ratio"] < 1e-3 and vanishing["data"]["first"] < 1e-4
    assert "layers.0" in vanishing["evidence"] and "layers.16" in vanishing["evidence"]
    assert {"field": "model.layers[1].type", "value": "relu"} in [
        {k: a[k] for k in ("field", "value")} for a in vanishing["actions"]]


def test_a_resumed_attempt_replays_the_stored_points_to_the_same_diagnosis() -> None:
    """worker/child.py feeds a resumed attempt's callback the points stored up to its
    checkpoint, read back in step order (names in any order within a step): replayed, they
    give the diagnosis the run itself gave."""
    layers = [layer for _ in range(8) for layer in ({"type": "linear", "out_features": 5},
                                                    {"type": "sigmoid"})]
    job = {"dataset": {"name": "moons", "noise": 0.1},
           "model": {"layers": [*layers, {"type": "linear", "out_features": 1}]},
           "loss": {"type": "bce_with_logits"}, "optimizer": {"type": "adam", "lr": 0.001},
           "training": {"epochs": 6, "batch_size": 32, "seed": 0}}
    report, _, sink = diagnose(job)
    spec = JobSpec.model_validate(job)
    facts = facts_from_spec(spec, task="classification", num_classes=2,
                            total_steps=sink.state.total_steps)
    stored = sorted(((p.name, p.step, p.value, p.epoch) for p in sink.points),
                    key=lambda row: (row[1], row[0][::-1]))  # step order, names shuffled
    summary = Summary()
    DiagnosisCallback(facts, summary).replay(stored)
    replayed = summary.as_dict()["diagnosis"]
    assert replayed["findings"] == report["findings"] and replayed["final"] is False


def test_a_small_normal_init_on_a_deep_relu_net_kills_its_units() -> None:
    layers = [layer for _ in range(6) for layer in ({"type": "linear", "out_features": 32},
                                                    {"type": "relu"})]
    job = {"dataset": {"name": "moons", "noise": 0.1},
           "model": {"init": {"type": "normal", "std": 0.01},
                     "layers": [*layers, {"type": "linear", "out_features": 2}]},
           "optimizer": {"type": "sgd", "lr": 0.01, "momentum": 0.9},
           "training": {"epochs": 6, "batch_size": 32, "seed": 0}}
    report, _, _ = diagnose(job)
    assert {"stuck_at_chance", "vanishing_gradients"} <= names(report), report
    vanishing = next(f for f in report["findings"] if f["name"] == "vanishing_gradients")
    assert vanishing["actions"][0]["value"] == {"type": "he_normal"}


def test_a_learning_rate_of_10_diverges_and_stops_the_job_with_spec_advice() -> None:
    job = copy.deepcopy(load_example("digits-mlp"))
    job["optimizer"] = {"type": "sgd", "lr": 10.0}
    job["training"] = {"epochs": 5, "batch_size": 64, "seed": 0}
    report, error, sink = diagnose(job)
    assert error is not None and error.startswith("diverged at step ")
    step = int(error.split()[3].rstrip(":"))
    assert "lower the learning rate (optimizer.lr) from 10 to 1" in error
    assert "dataset.normalize" not in error  # the inputs are standardised already
    assert report["final"] is True
    (divergence,) = [f for f in report["findings"] if f["name"] == "divergence"]
    assert divergence["severity"] == "error" and divergence["since_step"] == step
    # Stopped early, its curve kept up to the step it diverged at.
    logged = [p.step for p in sink.step_points()]
    assert logged[-1] == step < 5 * 26
    assert all(math.isfinite(p.value) for p in sink.step_points())


def test_activation_statistics_against_a_direct_computation() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.Sigmoid(),
                          nn.Linear(5, 3), nn.Tanh())
    with torch.no_grad():
        model[0].bias[:3] = -100.0  # three units that never fire
        model[2].weight *= 30  # a saturating sigmoid
        model[4].weight[0, 0] = 1e-9  # a near-zero weight
    x = torch.randn(50, 4)
    got = ActivationProbe(model, x).measure()
    h1 = torch.relu(model[0](x))
    h2 = torch.sigmoid(model[2](h1))
    h3 = torch.tanh(model[4](h2))
    assert got["dead_share/1"] == pytest.approx((h1 <= 0).all(dim=0).float().mean().item())
    assert got["dead_share/1"] >= 0.5
    assert got["act_mean/1"] == pytest.approx(h1.mean().item(), rel=1e-5)
    assert got["act_std/3"] == pytest.approx(h2.std(unbiased=False).item(), rel=1e-5)
    assert got["saturated_share/3"] == pytest.approx(
        ((h2 < 0.01) | (h2 > 0.99)).float().mean().item())
    assert got["saturated_share/5"] == pytest.approx((h3.abs() > 0.99).float().mean().item())
    w = model[4].weight.abs()
    assert got["zero_weight_share/4"] == pytest.approx(
        (w < 1e-3 * w.max()).float().mean().item()) and got["zero_weight_share/4"] > 0
    assert model.training  # left as it was


@pytest.mark.parametrize("val_fraction", [0.1, 0.0])
def test_the_loop_logs_activation_statistics_each_epoch(val_fraction: float) -> None:
    """Watching the validation pass, or, without a validation split, with a pass of its own
    over training samples."""
    job = copy.deepcopy(load_example("moons-bce"))
    job["dataset"]["val_fraction"] = val_fraction
    job["training"] = {"epochs": 2, "batch_size": 64, "seed": 0}
    _, _, sink = diagnose(job)
    logged = {p.name for p in sink.points}
    for layer in ("layers.1", "layers.3"):
        assert {f"act_mean/{layer}", f"act_std/{layer}", f"dead_share/{layer}"} <= logged
    assert {"zero_weight_share/layers.0", "zero_weight_share/layers.4"} <= logged
    per_epoch = sink.state.total_steps // 2
    assert [p.step for p in sink.points if p.name == "dead_share/layers.1"] == [
        per_epoch, 2 * per_epoch]
