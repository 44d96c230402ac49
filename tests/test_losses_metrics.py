"""Losses and the metrics that follow the task, each against an independent reference.

Losses are compared with torch.nn.functional on the same tensors (values and gradients equal,
not close); metrics with scikit-learn computed from the same outputs; the multi-label dataset
is checked for determinism and shape; short in-process training runs show that binary and
multi-label bce learn; every impossible combination is a 422 over HTTP naming its field.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm
from torch import nn

from core import datasets
from core.jobspec import JobSpec, validate_job
from core.settings import Settings
from core.specs.metrics import better_direction
from models.build import build_model
from models.losses import build_loss
from tests.conftest import load_example
from tests.test_api_specs import _assert_names_field
from tests.test_train_loop import CPU, ListSink
from worker import evaluate as evaluate_module
from worker.data import prepare_data
from worker.evaluate import batch_predictions, count_correct, evaluate
from worker.optim import build_optimizer
from worker.train import train


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """Every network here is tiny: one thread runs it fastest; two on a busy machine spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def loss_of(loss: dict) -> nn.Module:
    """The loss module a job with this loss section trains with."""
    document = {"dataset": {"name": "moons"},
                "model": {"layers": [{"type": "linear", "out_features": 1}]}, "loss": loss}
    return build_loss(JobSpec.model_validate(document).loss)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _binary() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(32, 1, generator=_gen(1)) * 2, torch.randint(0, 2, (32,), generator=_gen(2))


def _multilabel() -> tuple[torch.Tensor, torch.Tensor]:
    out = torch.randn(32, 4, generator=_gen(3)) * 2
    return out, torch.randint(0, 2, (32, 4), generator=_gen(4)).float()


def _classes() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(32, 3, generator=_gen(5)), torch.randint(0, 3, (32,), generator=_gen(6))


# --- losses against torch.nn.functional ------------------------------------------------------

bce = F.binary_cross_entropy_with_logits


@pytest.mark.parametrize(("loss", "reference", "data"), [
    ({"type": "bce_with_logits"}, lambda o, t: bce(o, t.float()[:, None]), _binary),
    ({"type": "bce_with_logits", "pos_weight": 3.0},
     lambda o, t: bce(o, t.float()[:, None], pos_weight=torch.tensor([3.0])), _binary),
    ({"type": "bce_with_logits"}, bce, _multilabel),
    ({"type": "bce_with_logits", "pos_weight": [1.0, 2.5, 0.5, 4.0]},
     lambda o, t: bce(o, t, pos_weight=torch.tensor([1.0, 2.5, 0.5, 4.0])), _multilabel),
    ({"type": "bce_with_logits", "pos_weight": 2},
     lambda o, t: bce(o, t, pos_weight=torch.full((4,), 2.0)), _multilabel),
    ({"type": "cross_entropy", "weight": [1.0, 3.0, 0.5]},
     lambda o, t: F.cross_entropy(o, t, weight=torch.tensor([1.0, 3.0, 0.5])), _classes),
    ({"type": "cross_entropy", "weight": [1.0, 3.0, 0.5], "label_smoothing": 0.1},
     lambda o, t: F.cross_entropy(o, t, weight=torch.tensor([1.0, 3.0, 0.5]),
                                  label_smoothing=0.1), _classes),
    ({"type": "cross_entropy"}, F.cross_entropy, _classes),
], ids=["binary", "binary-pos-weight", "multilabel", "multilabel-pos-weights",
        "multilabel-one-pos-weight", "ce-weights", "ce-weights-smoothing", "ce"])
def test_loss_matches_torch_functional(loss: dict, reference: Any, data: Any) -> None:
    out, target = data()
    out.requires_grad_(True)
    ours = loss_of(loss)(out, target)
    (grad_ours,) = torch.autograd.grad(ours, out)
    ref = reference(out, target)
    (grad_ref,) = torch.autograd.grad(ref, out)
    assert torch.equal(ours, ref)
    assert torch.equal(grad_ours, grad_ref)


def test_the_weights_change_the_loss() -> None:
    # The oracles above would pass with the weights ignored if the reference ignored them too.
    out, target = _multilabel()
    assert loss_of({"type": "bce_with_logits", "pos_weight": 3.0})(out, target) > loss_of(
        {"type": "bce_with_logits"})(out, target)
    out, labels = _classes()
    assert not torch.equal(loss_of({"type": "cross_entropy", "weight": [1.0, 3.0, 0.5]})(
        out, labels), loss_of({"type": "cross_entropy"})(out, labels))


def test_the_weights_follow_the_outputs_dtype() -> None:
    # A gradient check runs the loss in float64; the weights must not stay float32.
    out, target = _multilabel()
    loss = loss_of({"type": "bce_with_logits", "pos_weight": [1.0, 2.5, 0.5, 4.0]})
    value = loss(out.double(), target)
    ref = bce(out.double(), target.double(),
              pos_weight=torch.tensor([1.0, 2.5, 0.5, 4.0], dtype=torch.float64))
    assert value.dtype == torch.float64 and torch.equal(value, ref)
    out, labels = _classes()
    weighted = loss_of({"type": "cross_entropy", "weight": [1.0, 3.0, 0.5]})
    assert torch.equal(weighted(out.double(), labels), F.cross_entropy(
        out.double(), labels, weight=torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)))


def test_binary_bce_takes_soft_two_class_targets_as_mixup_makes_them() -> None:
    out, labels = _binary()
    soft = F.one_hot(labels, 2).float() * 0.7 + 0.15
    assert torch.equal(loss_of({"type": "bce_with_logits"})(out, soft), bce(out, soft[:, 1:]))


# --- metrics against scikit-learn ------------------------------------------------------------


@pytest.fixture
def chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluate in chunks of 7 samples, so the sums across chunks are checked too."""
    monkeypatch.setattr(evaluate_module, "EVAL_BATCH", 7)


def _evaluate(out: torch.Tensor, y: torch.Tensor, loss: nn.Module, task: str, **kw: Any):
    """Evaluate fixed outputs: the network is the identity and the inputs are the outputs."""
    return evaluate(nn.Identity(), loss, out, y, task, **kw)


@pytest.mark.usefixtures("chunked")
def test_classification_accuracy_and_top_k_match_sklearn() -> None:
    out, y = torch.randn(100, 6, generator=_gen(7)), torch.randint(0, 6, (100,), generator=_gen(8))
    result = _evaluate(out, y, nn.CrossEntropyLoss(), "classification", top_k=3)
    scores, labels = out.numpy(), y.numpy()
    assert result.accuracy == pytest.approx(skm.accuracy_score(labels, scores.argmax(1)))
    want = skm.top_k_accuracy_score(labels, scores, k=3, labels=range(6))
    assert result.extra == {"top3_accuracy": pytest.approx(want)}
    assert 0 < result.accuracy < want < 1  # the two differ, so each is checked
    assert result.loss == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-6)
    metrics = result.as_metrics("val")
    assert set(metrics) == {"val_loss", "val_accuracy", "val_top3_accuracy"}
    assert "val_top3_accuracy" not in _evaluate(out, y, nn.CrossEntropyLoss(),
                                                "classification").as_metrics("val")


@pytest.mark.usefixtures("chunked")
def test_a_weighted_loss_over_chunks_is_the_weighted_mean_over_the_split() -> None:
    out = torch.randn(100, 3, generator=_gen(11))
    y = torch.randint(0, 3, (100,), generator=_gen(12))
    weight = [1.0, 5.0, 0.2]
    loss = build_loss(JobSpec.model_validate({**load_example("spirals-mlp"), "loss": {
        "type": "cross_entropy", "weight": weight}}).loss)
    result = _evaluate(out, y, loss, "classification")
    want = F.cross_entropy(out, y, weight=torch.tensor(weight)).item()
    assert result.loss == pytest.approx(want, rel=1e-6)


@pytest.mark.usefixtures("chunked")
def test_binary_accuracy_thresholds_the_single_logit_at_zero() -> None:
    out, y = torch.randn(50, 1, generator=_gen(9)), torch.randint(0, 2, (50,), generator=_gen(10))
    result = _evaluate(out, y, loss_of({"type": "bce_with_logits"}), "classification")
    want = skm.accuracy_score(y.numpy(), (out.numpy()[:, 0] > 0).astype(int))
    assert result.accuracy == pytest.approx(want)
    assert 0.2 < want < 0.8  # random logits: an argmax over one column would score 1 - mean(y)
    assert result.loss == pytest.approx(bce(out, y.float()[:, None]).item(), rel=1e-6)
    assert count_correct(batch_predictions(out, "classification"), y,
                         "classification").item() == round(want * 50)


@pytest.mark.usefixtures("chunked")
def test_multilabel_per_label_accuracy_and_exact_match_match_sklearn() -> None:
    out, y = torch.randn(60, 4, generator=_gen(11)), torch.randint(0, 2, (60, 4),
                                                                  generator=_gen(12)).float()
    out[:20] = (y[:20] * 2 - 1) * 3  # a third predicted exactly, so exact_match is not zero
    result = _evaluate(out, y, loss_of({"type": "bce_with_logits"}), "multilabel")
    predicted = (out.numpy() > 0).astype(int)
    per_label = 1 - skm.hamming_loss(y.numpy(), predicted)
    exact = skm.accuracy_score(y.numpy(), predicted)  # subset accuracy on indicator arrays
    assert result.accuracy == pytest.approx(per_label)
    assert result.extra == {"exact_match": pytest.approx(exact)}
    assert 0 < exact < per_label < 1
    assert result.loss == pytest.approx(bce(out, y).item(), rel=1e-6)
    # Per step the loop gets right label decisions / L: / samples gives per-label accuracy.
    hits = count_correct(batch_predictions(out, "multilabel"), y, "multilabel")
    assert hits.item() / 60 == pytest.approx(per_label)


@pytest.mark.usefixtures("chunked")
@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_rmse_mae_and_r2_match_sklearn(outputs: int) -> None:
    y = torch.randn(90, outputs, generator=_gen(13))
    out = y + 0.5 * torch.randn(90, outputs, generator=_gen(14))
    result = _evaluate(out, y, nn.MSELoss(), "regression")
    truth, pred = y.numpy(), out.numpy()
    assert result.accuracy is None
    assert result.extra["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(truth, pred)))
    assert result.extra["mae"] == pytest.approx(skm.mean_absolute_error(truth, pred))
    assert result.extra["r2"] == pytest.approx(skm.r2_score(truth, pred), rel=1e-5)
    assert set(result.as_metrics("test")) == {"test_loss", "test_rmse", "test_mae", "test_r2"}


@pytest.mark.usefixtures("chunked")
def test_r2_of_constant_targets_follows_sklearn() -> None:
    y = torch.ones(10, 1)
    for out in (y.clone(), y + 0.1):
        got = _evaluate(out, y, nn.MSELoss(), "regression").extra["r2"]
        assert got == pytest.approx(skm.r2_score(y.numpy(), out.numpy()))


@pytest.mark.parametrize(("name", "better"), [
    ("val_accuracy", "max"), ("val_top5_accuracy", "max"), ("train_accuracy", "max"),
    ("val_exact_match", "max"), ("val_r2", "max"), ("val_loss", "min"), ("train_loss", "min"),
    ("val_rmse", "min"), ("val_mae", "min"), ("grad_norm/layers.0", None),
    ("weight_norm/layers.0", None), ("lr", None), ("samples_per_s", None),
])
def test_which_way_each_metric_improves(name: str, better: str | None) -> None:
    assert better_direction(name) == better


# --- the multi-label dataset -----------------------------------------------------------------


def test_zones_is_deterministic_multilabel_with_a_fixed_test_split() -> None:
    first, again = datasets.load("zones"), datasets.load("zones")
    other = datasets.load("zones", datasets.Options(seed=1))
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
    assert not np.array_equal(first.x_train, other.x_train)
    info = datasets.describe("zones")
    assert (info.task, info.input_shape, info.target_shape, info.num_classes) == (
        "multilabel", (2,), (4,), None)
    assert first.y_train.shape == (info.n_samples - info.n_test, 4)
    assert first.y_test.shape == (info.n_test, 4) and first.y_test.dtype == np.float32
    labels = np.concatenate([first.y_train, first.y_test])
    assert set(np.unique(labels)) == {0.0, 1.0}
    assert (labels.mean(axis=0) > 0.1).all() and (labels.mean(axis=0) < 0.9).all()
    # The test split is cut by position with a fixed seed, whatever the generation seed.
    _, held = datasets.split_indices(info.n_samples, datasets.TEST_FRACTION,
                                     datasets.TEST_SPLIT_SEED)
    x, y = datasets.BUILTINS["zones"].generate(datasets.Options(seed=1))
    assert np.array_equal(other.x_test, x[held]) and np.array_equal(other.y_test, y[held])


def test_zones_noise_flips_labels_near_the_boundaries() -> None:
    clean = datasets.BUILTINS["zones"].generate(datasets.Options(noise=0.0))
    noisy = datasets.BUILTINS["zones"].generate(datasets.Options(noise=0.2))
    assert np.array_equal(clean[0], noisy[0])
    assert 0 < (clean[1] != noisy[1]).mean() < 0.3


def test_splits_refuse_to_stratify_by_multilabel_targets() -> None:
    with pytest.raises(ValueError, match="class labels of shape"):
        datasets.split_indices(10, 0.2, 0, np.zeros((10, 4)))


# --- training through the loop ---------------------------------------------------------------


def _train(job: dict) -> tuple[dict[str, float], nn.Module, Any, ListSink]:
    spec = JobSpec.model_validate(job)
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, CPU)
    model, _ = build_model(spec.model, data.input_shape)
    sink = ListSink()
    final = train(spec, model, build_optimizer(spec, model), build_loss(spec.loss), data, [sink])
    return final, model, data, sink


def _mlp(outputs: int, width: int = 32) -> dict:
    return {"layers": [{"type": "linear", "out_features": width}, {"type": "relu"},
                       {"type": "linear", "out_features": width}, {"type": "relu"},
                       {"type": "linear", "out_features": outputs}]}


def test_binary_bce_on_moons_reaches_high_accuracy() -> None:
    final, model, data, sink = _train({
        "dataset": {"name": "moons"}, "model": _mlp(1),
        "loss": {"type": "bce_with_logits", "pos_weight": 1.5},
        "optimizer": {"type": "adam", "lr": 0.01},
        "training": {"epochs": 15, "batch_size": 64, "seed": 0},
    })
    model.eval()
    with torch.no_grad():
        logit = model(data.x_test)[:, 0]
    assert final["test_accuracy"] == pytest.approx(
        ((logit > 0).long() == data.y_test).float().mean().item())
    assert final["test_accuracy"] >= 0.97
    assert sink.epochs[-1]["train_accuracy"] >= 0.95
    assert sink.epochs[-1]["val_accuracy"] >= 0.95


def test_multilabel_bce_on_zones_learns_every_label() -> None:
    final, model, data, sink = _train({
        "dataset": {"name": "zones"}, "model": _mlp(4, 64),
        "loss": {"type": "bce_with_logits"},
        "optimizer": {"type": "adam", "lr": 0.01},
        "training": {"epochs": 40, "batch_size": 64, "seed": 0},
    })
    model.eval()
    with torch.no_grad():
        predicted = (model(data.x_test) > 0).numpy().astype(int)
    truth = data.y_test.numpy()
    assert final["test_accuracy"] == pytest.approx(1 - skm.hamming_loss(truth, predicted))
    assert final["test_exact_match"] == pytest.approx(skm.accuracy_score(truth, predicted))
    # Guessing each label's majority value would score about 0.65 per label.
    assert final["test_accuracy"] >= 0.94 and final["test_exact_match"] >= 0.75
    per_label = (predicted == truth).mean(axis=0)
    assert (per_label >= 0.88).all(), per_label
    assert sink.epochs[-1]["val_accuracy"] >= 0.9
    if "train_accuracy" in sink.epochs[-1]:  # once worker/train.py reports it for multilabel
        assert sink.epochs[-1]["train_accuracy"] >= 0.9


def test_regression_records_mae_and_r2() -> None:
    final, model, data, _ = _train({
        "dataset": {"name": "sine", "n_samples": 400}, "model": _mlp(1),
        "loss": {"type": "mse"}, "optimizer": {"type": "adam", "lr": 0.01},
        "training": {"epochs": 10, "batch_size": 32, "seed": 0},
    })
    model.eval()
    with torch.no_grad():
        pred = model(data.x_test).numpy()
    truth = data.y_test.numpy()
    assert final["test_mae"] == pytest.approx(skm.mean_absolute_error(truth, pred), rel=1e-5)
    assert final["test_r2"] == pytest.approx(skm.r2_score(truth, pred), rel=1e-5)
    assert final["test_r2"] > 0.8


# --- impossible combinations are 422s naming the field, over HTTP ----------------------------

MOONS_1 = {"name": "moons", "n_samples": 100}
ONE_OUT = _mlp(1, 4)
BCE = {"type": "bce_with_logits"}


def _spec(dataset: dict, model: dict, loss: dict, **extra: Any) -> dict:
    return {"dataset": dataset, "model": model, "loss": loss,
            "training": {"epochs": 1, "batch_size": 32}, **extra}


BAD = [
    ("bce-on-regression", _spec({"name": "sine"}, ONE_OUT, BCE),
     "loss.type", "bce_with_logits needs a classification or multilabel dataset; sine is "
     "regression: use mse, l1 or huber"),
    ("bce-on-three-classes", _spec({"name": "spirals"}, _mlp(3, 4), BCE),
     "loss.type", "spirals has 3 classes: use cross_entropy, or set dataset.classes to 2"),
    ("bce-on-digits", _spec({"name": "digits"}, {"layers": [
        {"type": "flatten"}, {"type": "linear", "out_features": 1}]}, BCE),
     "loss.type", "digits has 10 classes: use cross_entropy"),
    ("binary-bce-with-two-outputs", _spec(MOONS_1, _mlp(2, 4), BCE),
     "model.layers[4]", "bce_with_logits needs 1 output, the logit of class 1; end with a "
     "linear layer with out_features 1"),
    ("multilabel-bce-with-wrong-width", _spec({"name": "zones"}, _mlp(3, 4), BCE),
     "model.layers[4]", "zones's labels are (4,); end with a linear layer with out_features 4"),
    ("cross-entropy-on-multilabel", _spec({"name": "zones"}, _mlp(4, 4),
                                          {"type": "cross_entropy"}),
     "loss.type", "zones is multilabel: use bce_with_logits"),
    ("mse-on-multilabel", _spec({"name": "zones"}, _mlp(4, 4), {"type": "mse"}),
     "loss.type", "mse needs a regression dataset; zones is multilabel: use bce_with_logits"),
    ("mse-on-moons-suggests-both", _spec(MOONS_1, ONE_OUT, {"type": "mse"}),
     "loss.type", "use cross_entropy or bce_with_logits"),
    ("pos-weight-list-too-long", _spec(MOONS_1, ONE_OUT, {**BCE, "pos_weight": [1.0, 2.0]}),
     "loss.pos_weight", "2 weights for 1 output: give one per output (1 in all)"),
    ("pos-weight-list-too-short", _spec({"name": "zones"}, _mlp(4, 4),
                                        {**BCE, "pos_weight": [1.0, 2.0]}),
     "loss.pos_weight", "2 weights for 4 outputs"),
    ("pos-weight-negative", _spec(MOONS_1, ONE_OUT, {**BCE, "pos_weight": -1}),
     "loss.pos_weight", "must be a number above 0"),
    ("pos-weight-entry-zero", _spec({"name": "zones"}, _mlp(4, 4),
                                    {**BCE, "pos_weight": [1, 0, 1, 1]}),
     "loss.pos_weight", "entry 1 is 0"),
    ("pos-weight-text", _spec(MOONS_1, ONE_OUT, {**BCE, "pos_weight": "high"}),
     "loss.pos_weight", "must be a number above 0"),
    ("pos-weight-on-cross-entropy", _spec(MOONS_1, _mlp(2, 4),
                                          {"type": "cross_entropy", "pos_weight": 2.0}),
     "loss.pos_weight", "unknown field"),
    ("ce-weight-count", _spec({"name": "spirals"}, _mlp(3, 4),
                              {"type": "cross_entropy", "weight": [1.0, 2.0]}),
     "loss.weight", "2 weights for 3 classes: give one weight per class of spirals, 3 in all"),
    ("ce-weight-negative", _spec({"name": "spirals"}, _mlp(3, 4),
                                 {"type": "cross_entropy", "weight": [1.0, -2.0, 1.0]}),
     "loss.weight[1]", "greater than 0"),
    ("weight-on-bce", _spec(MOONS_1, ONE_OUT, {**BCE, "weight": [1.0, 2.0]}),
     "loss.weight", "unknown field"),
    ("top-k-not-below-classes", _spec({"name": "spirals"}, _mlp(3, 4), {"type": "cross_entropy"},
                                      metrics={"top_k": 3}),
     "metrics.top_k", "spirals has 3 classes, so top-3 accuracy would always be 1: use a "
     "top_k of at most 2, or remove it"),
    ("top-k-on-two-classes", _spec(MOONS_1, _mlp(2, 4), {"type": "cross_entropy"},
                                   metrics={"top_k": 2}),
     "metrics.top_k", "moons has 2 classes, so top-2 accuracy would always be 1: remove it"),
    ("top-k-on-regression", _spec({"name": "sine"}, ONE_OUT, {"type": "mse"},
                                  metrics={"top_k": 2}),
     "metrics.top_k", "this one uses mse: remove metrics.top_k"),
    ("top-k-on-binary-bce", _spec(MOONS_1, ONE_OUT, BCE, metrics={"top_k": 2}),
     "metrics.top_k", "this one uses bce_with_logits"),
    ("top-k-one", _spec({"name": "spirals"}, _mlp(3, 4), {"type": "cross_entropy"},
                        metrics={"top_k": 1}),
     "metrics.top_k", "greater than or equal to 2"),
    ("unknown-metrics-field", _spec(MOONS_1, _mlp(2, 4), {"type": "cross_entropy"},
                                    metrics={"f1": True}),
     "metrics.f1", "unknown field"),
]


@pytest.mark.parametrize(("spec", "field", "phrase"),
                         [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_a_bad_loss_or_metric_is_422_naming_the_field(client, spec, field, phrase) -> None:
    _assert_names_field(client.post("/v1/jobs/validate", json=spec), field, phrase)


@pytest.mark.parametrize("spec", [
    _spec(MOONS_1, ONE_OUT, {**BCE, "pos_weight": [2.0]}),
    _spec({"name": "spirals", "classes": 2}, ONE_OUT, {**BCE, "pos_weight": 2.0}),
    _spec({"name": "zones"}, _mlp(4, 4), {**BCE, "pos_weight": [1, 2, 3, 4]}),
    _spec({"name": "zones"}, _mlp(4, 4), {**BCE, "pos_weight": 3}),
    _spec({"name": "digits"}, {"layers": [{"type": "flatten"},
                                          {"type": "linear", "out_features": 10}]},
          {"type": "cross_entropy", "weight": [1.0] * 9 + [5.0]}, metrics={"top_k": 5}),
], ids=["binary-one-weight", "spirals-two-classes", "zones-weights", "zones-one-weight",
        "digits-weights-top5"])
def test_good_combinations_validate(client, spec) -> None:
    response = client.post("/v1/jobs/validate", json=spec)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("name", ["moons-bce", "zones-multilabel"])
def test_the_examples_validate(name: str) -> None:
    validate_job(JobSpec.model_validate(load_example(name)), Settings())


def test_the_datasets_endpoint_describes_zones_as_multilabel(client) -> None:
    zones = client.get("/v1/datasets/zones").json()
    assert (zones["task"], zones["target_shape"], zones["num_classes"]) == ("multilabel", [4],
                                                                            None)
