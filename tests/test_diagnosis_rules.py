"""The diagnosis rules (core/diagnosis) on synthetic series: each fires on the fault it names,
with the numbers it rests on and spec-dependent actions, and none fires on healthy curves,
noisy-but-fine ones included. The engine is fed points as the loop emits them: logged
training losses every few steps, epoch metrics and per-layer statistics at each epoch's end
(a check)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from core.diagnosis import Diagnosis, DivergenceWatch, RunFacts, diverged_message
from core.diagnosis.noise import smoothness

STEPS_PER_EPOCH = 20
LOG_EVERY = 2


def facts(**changes) -> RunFacts:
    base = dict(task="classification", num_classes=10, loss="cross_entropy", optimizer="sgd",
                lr=0.1, total_steps=20 * STEPS_PER_EPOCH, init="he_normal",
                activations=[("model.layers[1]", "relu"), ("model.layers[3]", "relu")],
                weighted_layers=3)
    return RunFacts(**{**base, **changes})


def healthy_loss(step: int, seed: int = 0, noise: float = 0.05) -> float:
    """A loss falling from ln 10 towards 0.05, with multiplicative minibatch noise."""
    rng = random.Random(seed * 100_003 + step)
    return (0.05 + (math.log(10) - 0.05) * math.exp(-step / 80)) * (1 + rng.gauss(0, noise))


def feed(engine: Diagnosis, epochs: int, loss: Callable[[int], float],
         epoch_metrics: Callable[[int, int], dict[str, float]]) -> list[str]:
    """Drive the engine as the loop does; returns the names reported at the end. Stops at a
    divergence, as the loop does."""
    for epoch in range(1, epochs + 1):
        for step in range((epoch - 1) * STEPS_PER_EPOCH + LOG_EVERY, epoch * STEPS_PER_EPOCH + 1,
                          LOG_EVERY):
            if engine.add("train_loss_step", step, loss(step)) is not None:
                return [f.name for f in engine.current()]
        step = epoch * STEPS_PER_EPOCH
        for name, value in epoch_metrics(epoch, step).items():
            engine.add(name, step, value)
        engine.check(step)
    return [f.name for f in engine.current()]


def healthy_metrics(seed: int = 0, layers: int = 3) -> Callable[[int, int], dict[str, float]]:
    def metrics(epoch: int, step: int) -> dict[str, float]:
        rng = random.Random(seed * 7919 + epoch)
        train = healthy_loss(step, seed, 0.0)
        values = {"train_loss": train, "val_loss": train * 1.3 + 0.02 * rng.random(),
                  "train_accuracy": min(0.99, 1 - train / 2.5),
                  "val_accuracy": min(0.97, 1 - train / 2.3)}
        for i in range(layers):
            values[f"grad_norm/layers.{2 * i}"] = 0.5 * (1 + 0.2 * rng.random())
            values[f"update_ratio/layers.{2 * i}"] = 1e-3 * (1 + rng.random())
            values[f"weight_norm/layers.{2 * i}"] = 5.0
        for i in range(layers - 1):
            values[f"dead_share/layers.{2 * i + 1}"] = 0.05 * rng.random()
            values[f"act_mean/layers.{2 * i + 1}"] = 0.4
        return values
    return metrics


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("noise", [0.05, 0.3])
def test_healthy_curves_raise_nothing(seed: int, noise: float) -> None:
    engine = Diagnosis(facts())
    assert feed(engine, 20, lambda s: healthy_loss(s, seed, noise), healthy_metrics(seed)) == []
    assert engine.report(final=True) == {"final": True, "step": 400, "findings": []}


def test_a_converged_loss_that_zigzags_near_zero_is_not_divergence_nor_noise() -> None:
    """4x a best of 0.002 is 0.008: noise, not a divergence (the smoothed loss must also be
    above where it started); and a zigzag around a level near zero is not a noisy loss."""
    def loss(step: int) -> float:
        return 2.3 if step < 50 else 0.002 * (1 + 5 * (step % 4 == 0))

    engine = Diagnosis(facts())
    assert feed(engine, 20, loss, healthy_metrics()) == []


def test_a_non_finite_loss_diverges_at_once_with_spec_dependent_advice() -> None:
    watch = DivergenceWatch(facts(lr=5.0))
    found = watch.update(3, math.inf)
    assert found.name == "divergence" and found.severity == "error" and found.since_step == 3
    fields = {a.field: a.value for a in found.actions}
    assert fields["optimizer.lr"] == 0.5
    assert fields["regularization.clip_grad"] == {"by": "norm", "max": 1.0}
    assert fields["schedule"]["type"] == "warmup"
    assert "dataset.normalize" not in fields  # the inputs are standardised already
    message = diverged_message(facts(lr=5.0), 3, watch.reason)
    assert message.startswith("diverged at step 3: the training loss became inf; lower the "
                              "learning rate (optimizer.lr) from 5 to 0.5")
    # What the spec already does is not suggested again; what it lacks is.
    bare = DivergenceWatch(facts(normalize="none", clip=True, warmup=True)).update(1, math.nan)
    assert {a.field for a in bare.actions} == {"optimizer.lr", "dataset.normalize"}


def test_a_smoothed_loss_above_4x_its_best_diverges_after_3_points() -> None:
    engine = Diagnosis(facts())
    names = feed(engine, 20, lambda s: healthy_loss(s) if s < 120 else 50.0 * 1.5 ** (s - 120),
                 healthy_metrics())
    assert names[0] == "divergence"
    finding = engine.diverged
    assert 120 < finding.since_step <= 130
    assert finding.data["smoothed_loss"] > 4 * finding.data["best_loss"]


def test_early_spikes_before_the_warm_up_are_not_divergence() -> None:
    # Up within the first 10 points (a large early step), then down: no divergence.
    engine = Diagnosis(facts())
    assert feed(engine, 20, lambda s: 40.0 if 4 <= s <= 12 else healthy_loss(s),
                healthy_metrics()) == []


def test_suspicious_initial_loss() -> None:
    engine = Diagnosis(facts())
    names = feed(engine, 2, lambda s: 9.0 if s == 2 else healthy_loss(s), healthy_metrics())
    assert names == ["suspicious_initial_loss"]
    found = engine.current()[0]
    assert found.data == {"initial_loss": 9.0, "chance_loss": pytest.approx(math.log(10))}
    assert found.since_step == 2
    # ln C = 0.69 for 2 classes: 1.8 is within the 1.5-nat floor, 2.5 is not.
    for first, fires in ((1.8, False), (2.5, True)):
        engine = Diagnosis(facts(num_classes=2))
        names = feed(engine, 2, lambda s, f=first: f if s == 2 else 0.6, healthy_metrics())
        assert ("suspicious_initial_loss" in names) is fires


def stuck_metrics(first_grad: float) -> Callable[[int, int], dict[str, float]]:
    def metrics(epoch: int, step: int) -> dict[str, float]:
        return {"train_loss": 2.302, "val_loss": 2.303, "train_accuracy": 0.11,
                "val_accuracy": 0.1, "grad_norm/layers.1": first_grad,
                "grad_norm/layers.17": 0.8, "update_ratio/layers.1": 1e-9,
                "update_ratio/layers.17": 3e-3}
    return metrics


def test_deep_sigmoid_stuck_at_chance_with_vanishing_gradients() -> None:
    sigmoid = facts(init="torch_default", activations=[(f"model.layers[{i}]", "sigmoid")
                                                       for i in range(2, 17, 2)])
    engine = Diagnosis(sigmoid)
    names = feed(engine, 10, lambda s: 2.303, stuck_metrics(4e-7))
    assert set(names) == {"stuck_at_chance", "vanishing_gradients"}
    vanishing = next(f for f in engine.current() if f.name == "vanishing_gradients")
    assert vanishing.data["ratio"] == pytest.approx(4e-7 / 0.8)
    assert "layers.1 4e-07" in vanishing.evidence and "layers.17 0.8" in vanishing.evidence
    fields = [a.field for a in vanishing.actions]
    assert fields[:2] == ["model.layers[2].type", "model.layers[4].type"]
    assert fields[-1] == "model.init"
    # Persistence: the finding dates from the first of the checks it held at.
    assert vanishing.since_step <= 3 * STEPS_PER_EPOCH


def test_small_gradients_in_a_network_that_learns_are_not_vanishing() -> None:
    def metrics(epoch: int, step: int) -> dict[str, float]:
        return {**healthy_metrics()(epoch, step), "grad_norm/layers.0": 1e-6}

    assert feed(Diagnosis(facts()), 20, healthy_loss, metrics) == []


def test_lr_too_low_and_not_when_one_layer_alone_barely_moves() -> None:
    def slow(epoch: int, step: int) -> dict[str, float]:
        return {"train_loss": 2.3 - 0.001 * epoch, "val_loss": 2.3, "train_accuracy": 0.3,
                "val_accuracy": 0.3, "update_ratio/layers.0": 3e-6,
                "update_ratio/layers.2": 1e-5}
    engine = Diagnosis(facts(lr=1e-5))
    assert "lr_too_low" in feed(engine, 10, lambda s: 2.3, slow)
    action = next(f for f in engine.current() if f.name == "lr_too_low").actions[0]
    assert (action.field, action.value) == ("optimizer.lr", 1e-4)

    def one_layer(epoch: int, step: int) -> dict[str, float]:
        return {**slow(epoch, step), "update_ratio/layers.2": 3e-3}
    assert "lr_too_low" not in feed(Diagnosis(facts(lr=1e-5)), 10, lambda s: 2.3, one_layer)


def test_lr_too_high_while_the_loss_stalls() -> None:
    def jumpy(epoch: int, step: int) -> dict[str, float]:
        return {"train_loss": 1.5, "val_loss": 1.6, "train_accuracy": 0.45,
                "val_accuracy": 0.4, "update_ratio/layers.0": 0.3,
                "update_ratio/layers.2": 0.5}
    engine = Diagnosis(facts(lr=2.0))
    assert "lr_too_high" in feed(engine, 10, lambda s: 1.5, jumpy)
    found = next(f for f in engine.current() if f.name == "lr_too_high")
    assert found.actions[0].value == 0.2

    def learning(epoch: int, step: int) -> dict[str, float]:  # same ratios, loss falling
        return {**jumpy(epoch, step), "train_loss": 2.0 * 0.8 ** epoch}
    assert "lr_too_high" not in feed(Diagnosis(facts(lr=2.0)), 10, lambda s: 1.5, learning)


def test_exploding_gradients() -> None:
    def exploding(epoch: int, step: int) -> dict[str, float]:
        return {"train_loss": 2.0, "val_loss": 2.1, "train_accuracy": 0.3,
                "val_accuracy": 0.3, "grad_norm/layers.0": 100.0 * 2 ** epoch,
                "grad_norm/layers.4": 1.0}
    engine = Diagnosis(facts())
    assert "exploding_gradients" in feed(engine, 8, lambda s: 2.0, exploding)
    fields = [a.field for a in next(f for f in engine.current()
                                    if f.name == "exploding_gradients").actions]
    assert fields[0] == "regularization.clip_grad"


def test_dead_units_and_saturation() -> None:
    def dead(epoch: int, step: int) -> dict[str, float]:
        return {**healthy_metrics()(epoch, step), "dead_share/layers.1": 0.8}
    engine = Diagnosis(facts())
    assert feed(engine, 5, healthy_loss, dead) == ["dead_units"]
    found = engine.current()[0]
    assert "layers.1 80%" in found.evidence
    assert found.actions[0].field == "model.layers[1].type"
    assert found.actions[0].value == "leaky_relu"

    tanh = facts(activations=[("model.layers[1]", "tanh")], init="xavier_normal")

    def saturated(epoch: int, step: int) -> dict[str, float]:
        return {"train_loss": 1.9, "val_loss": 1.9, "train_accuracy": 0.3, "val_accuracy": 0.3,
                "saturated_share/layers.1": 0.9}
    engine = Diagnosis(tanh)
    assert "saturation" in feed(engine, 8, lambda s: 1.9, saturated)
    # Saturated once it has learnt: a confident classifier, no finding.
    def confident(epoch: int, step: int) -> dict[str, float]:
        return {**healthy_metrics()(epoch, step),
                "saturated_share/layers.1": 0.9 if epoch >= 2 else 0.1}
    assert feed(Diagnosis(tanh), 20, healthy_loss, confident) == []
    # Saturated from the first check, before it had learnt, though the loss falls: the
    # initialisation or the inputs put it there (N(0, 1) weights under tanh).
    def from_the_start(epoch: int, step: int) -> dict[str, float]:
        return {**healthy_metrics()(epoch, step), "saturated_share/layers.1": 0.9}
    assert feed(Diagnosis(tanh), 20, healthy_loss, from_the_start) == ["saturation"]


def test_overfitting_needs_a_sustained_rise_not_one_bad_epoch() -> None:
    def rising(epoch: int, step: int) -> dict[str, float]:
        train = 1.0 * 0.8 ** epoch
        val = 0.5 + 0.03 * max(0, epoch - 8)
        return {"train_loss": train, "val_loss": val, "train_accuracy": 0.9,
                "val_accuracy": 0.8}
    engine = Diagnosis(facts())
    assert feed(engine, 20, healthy_loss, rising) == ["overfitting"]
    found = engine.current()[0]
    assert found.data["best_step"] == 8 * STEPS_PER_EPOCH or found.data["best_val_loss"] == 0.5
    assert {a.field for a in found.actions} == {"training.early_stopping",
                                                "optimizer.weight_decay"}

    def one_bad(epoch: int, step: int) -> dict[str, float]:
        values = rising(epoch, step)
        values["val_loss"] = 0.9 if epoch == 15 else 0.5
        return values
    assert feed(Diagnosis(facts()), 20, healthy_loss, one_bad) == []


def test_overfitting_also_when_val_loss_levels_off_far_above_train_loss() -> None:
    """The stalled form: a validation loss that creeps up 0.5% an epoch (no window of 3 rises
    5%) while the training loss falls toward 0; not while the validation accuracy climbs."""
    def creeping(epoch: int, step: int) -> dict[str, float]:
        val = 0.5 + 0.0025 * max(0, epoch - 4) if epoch >= 4 else 0.5 + 0.1 * (4 - epoch)
        return {"train_loss": 0.8 ** epoch, "val_loss": val, "train_accuracy": 0.99,
                "val_accuracy": 0.85}
    engine = Diagnosis(facts())
    assert feed(engine, 24, healthy_loss, creeping) == ["overfitting"]
    found = engine.current()[0]
    assert found.data["best_step"] == 4 * STEPS_PER_EPOCH and found.data["rise"] < 0.05
    assert "has not improved for" in found.evidence

    def climbing(epoch: int, step: int) -> dict[str, float]:
        return {**creeping(epoch, step), "val_accuracy": min(0.95, 0.6 + 0.02 * epoch)}
    assert feed(Diagnosis(facts()), 24, healthy_loss, climbing) == []


def test_underfitting() -> None:
    def flat(epoch: int, step: int) -> dict[str, float]:
        accuracy = min(0.35, 0.1 + 0.05 * epoch)
        return {"train_loss": 1.8, "val_loss": 1.8, "train_accuracy": accuracy,
                "val_accuracy": accuracy - 0.01}
    engine = Diagnosis(facts())
    assert feed(engine, 12, lambda s: 1.8 + 0.01 * (s % 3), flat) == ["underfitting"]
    assert engine.current()[0].since_step >= 0.3 * 400


def test_noisy_loss_and_its_healthy_twin() -> None:
    def bouncing(step: int) -> float:
        return 1.0 if (step // LOG_EVERY) % 2 else 0.2

    engine = Diagnosis(facts(batch_size=1))
    assert feed(engine, 10, bouncing, healthy_metrics()) == ["noisy_loss"]
    action = engine.current()[0].actions[0]
    assert (action.field, action.value) == ("training.batch_size", 4)
    # i.i.d. noise scores about 1/3 on smoothness alone, yet small noise is no finding.
    rng = random.Random(0)
    assert smoothness([rng.random() for _ in range(2000)]) == pytest.approx(1 / 3, abs=0.03)


def test_regression_and_multilabel_runs_have_no_chance_rules() -> None:
    for task in ("regression", "multilabel"):
        engine = Diagnosis(facts(task=task, num_classes=None, loss="mse"))
        assert feed(engine, 10, lambda s: 9.0, lambda e, s: {"train_loss": 9.0,
                                                             "val_loss": 9.0}) == []


def test_the_report_has_the_contract_shape() -> None:
    engine = Diagnosis(facts())
    feed(engine, 2, lambda s: 9.0 if s == 2 else healthy_loss(s), healthy_metrics())
    report = engine.report(final=True)
    assert report["final"] is True and report["step"] == 40
    (finding,) = report["findings"]
    assert set(finding) == {"name", "severity", "since_step", "evidence", "data", "actions"}
    assert finding["severity"] == "warning"
    assert all(set(a) == {"field", "value", "why"} for a in finding["actions"])
