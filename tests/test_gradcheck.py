"""The gradient check: autograd against central differences, per parameter tensor.

In-process: every layer type passes, a deliberately broken backward is caught with the
relative error its factor predicts, dropout and batchnorm are handled and said so, and the
caller's RNG and network are untouched. Over HTTP: POST /v1/gradcheck and the job preflight.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from core import datasets
from core.jobspec import JobSpec
from models import spec as s
from models.build import build_model
from models.gradcheck import check_gradients, relative_error, verdict_for
from models.layers import REGISTRY
from tests.conftest import wait_for_state
from worker.callbacks import Summary
from worker.child import GradientCheckFailed, _preflight


def _then_linear(*layers: dict) -> list[dict]:
    return [*layers, {"type": "linear", "out_features": 3}]


def _activation(layer: dict) -> tuple[list[dict], tuple[int, ...]]:
    return [{"type": "linear", "out_features": 6}, layer,
            {"type": "linear", "out_features": 3}], (4,)


def _conv1d(*layers: dict) -> tuple[list[dict], tuple[int, ...]]:
    return [{"type": "conv1d", "out_channels": 3}, *layers, {"type": "flatten"},
            {"type": "linear", "out_features": 3}], (2, 10)


def _conv2d(*layers: dict) -> tuple[list[dict], tuple[int, ...]]:
    return [{"type": "conv2d", "out_channels": 3}, *layers, {"type": "flatten"},
            {"type": "linear", "out_features": 3}], (2, 8, 8)


# A tiny network per case, ending in 3 logits; every REGISTRY type appears in one.
CASES: dict[str, tuple[list[dict], tuple[int, ...]]] = {
    "linear": (_then_linear({"type": "linear", "out_features": 5}, {"type": "tanh"}), (4,)),
    "linear-no-bias": ([{"type": "linear", "out_features": 3, "bias": False}], (4,)),
    "conv1d": _conv1d({"type": "conv1d", "out_channels": 4, "dilation": 2, "groups": 1}),
    "conv2d": _conv2d({"type": "conv2d", "out_channels": 6, "padding": "same", "groups": 3}),
    "conv2d-strided": _conv2d({"type": "conv2d", "out_channels": 2, "stride": 2,
                               "padding": 1}),
    "maxpool1d": _conv1d({"type": "maxpool1d"}),
    "maxpool2d": _conv2d({"type": "maxpool2d"}),
    "avgpool1d": _conv1d({"type": "avgpool1d", "kernel_size": 3}),
    "avgpool2d": _conv2d({"type": "avgpool2d", "stride": 1}),
    "global_avg_pool": ([{"type": "conv2d", "out_channels": 4}, {"type": "global_avg_pool"},
                         {"type": "linear", "out_features": 3}], (2, 6, 6)),
    "flatten-reshape": ([{"type": "reshape", "shape": [2, 6]},
                         {"type": "conv1d", "out_channels": 2}, {"type": "flatten"},
                         {"type": "linear", "out_features": 3}], (12,)),
    "dropout": _activation({"type": "dropout", "p": 0.5}),
    "batchnorm-1d": _activation({"type": "batchnorm"}),
    "batchnorm-2d": _conv2d({"type": "batchnorm"}, {"type": "tanh"}),
    "layernorm": _activation({"type": "layernorm"}),
    "identity": _activation({"type": "identity"}),
    "relu": _activation({"type": "relu"}),
    "sigmoid": _activation({"type": "sigmoid"}),
    "tanh": _activation({"type": "tanh"}),
    "leaky_relu": _activation({"type": "leaky_relu", "negative_slope": 0.1}),
    "prelu": _activation({"type": "prelu", "num_parameters": "channel"}),
    "elu": _activation({"type": "elu"}),
    "selu": _activation({"type": "selu"}),
    "gelu": _activation({"type": "gelu", "approximate": "tanh"}),
    "silu": _activation({"type": "silu"}),
    "softplus": _activation({"type": "softplus", "beta": 2.0}),
    "softmax": ([{"type": "linear", "out_features": 3}, {"type": "softmax"}], (4,)),
    "log_softmax": ([{"type": "linear", "out_features": 3}, {"type": "log_softmax"}], (4,)),
    "maxout": (_then_linear({"type": "maxout", "out_features": 4, "pieces": 3}), (4,)),
    "maxout_conv2d": ([{"type": "maxout_conv2d", "out_channels": 2, "pieces": 3},
                       {"type": "flatten"}, {"type": "linear", "out_features": 3}], (1, 5, 5)),
    "maxout_conv1d": ([{"type": "maxout_conv1d", "out_channels": 2, "pieces": 2},
                       {"type": "flatten"}, {"type": "linear", "out_features": 3}], (2, 6)),
    "residual": (_then_linear(
        {"type": "linear", "out_features": 5},
        {"type": "residual", "layers": [{"type": "linear", "out_features": 5},
                                        {"type": "tanh"}]},
        {"type": "residual", "layers": [{"type": "linear", "out_features": 4},  # projected
                                        {"type": "residual", "layers": [{"type": "relu"}]}]},
    ), (4,)),
    "residual-conv": ([
        {"type": "residual", "layers": [{"type": "conv2d", "out_channels": 4, "stride": 2,
                                         "padding": 1}, {"type": "batchnorm"}]},
        {"type": "global_avg_pool"}, {"type": "linear", "out_features": 3},
    ], (2, 6, 6)),
}


def _network(layers: list[dict], shape: tuple[int, ...], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model, _ = build_model(s.ModelSpec.model_validate({"layers": layers}), shape)
    return model


def _batch(shape: tuple[int, ...], n: int = 6, classes: int = 3, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, *shape, generator=generator),
            torch.randint(0, classes, (n,), generator=generator))


def test_every_layer_type_has_a_case():
    covered = set()

    def walk(layers):
        for layer in layers:
            covered.add(layer["type"])
            walk(layer.get("layers", []))

    for layers, _ in CASES.values():
        walk(layers)
    assert covered == set(REGISTRY)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_layer_type_checks_correct(case):
    layers, shape = CASES[case]
    model = _network(layers, shape)
    x, y = _batch(shape)
    report = check_gradients(model, nn.CrossEntropyLoss(), x, y)
    assert report.verdict == "correct", report.as_dict()
    names = [name for name, _ in model.named_parameters()]
    assert [t.name for t in report.tensors] == names
    for tensor, (_, param) in zip(report.tensors, model.named_parameters(), strict=True):
        assert tensor.shape == tuple(param.shape)
        assert tensor.coordinates == min(param.numel(), 30)
        assert tensor.relative_error < 1e-7


@pytest.mark.parametrize("loss", [nn.MSELoss(), nn.L1Loss(), nn.HuberLoss(delta=0.5)])
def test_regression_losses_check_correct(loss):
    model = _network([{"type": "linear", "out_features": 8}, {"type": "silu"},
                      {"type": "linear", "out_features": 1}], (2,))
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(3))
    y = torch.randn(6, 1, generator=torch.Generator().manual_seed(4))
    assert check_gradients(model, loss, x, y).verdict == "correct"


class _ScaledBackward(torch.autograd.Function):
    """y = x · w, whose backward to w is scaled by `factor` (1: the true gradient)."""

    @staticmethod
    def forward(ctx, x, weight, factor):
        ctx.save_for_backward(x, weight)
        ctx.factor = factor
        return x * weight

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return grad * weight, (grad * x).sum(dim=0) * ctx.factor, None


class _Scale(nn.Module):
    def __init__(self, features: int, factor: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, features))
        self.factor = factor

    def forward(self, x):
        return _ScaledBackward.apply(x, self.weight, self.factor)


def _scaled_net(factor: float) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), _Scale(5, factor), nn.Linear(5, 3))


def test_a_wrong_backward_is_wrong_by_the_error_its_factor_predicts():
    x, y = _batch((4,))
    right = check_gradients(_scaled_net(1.0), nn.CrossEntropyLoss(), x, y)
    assert right.verdict == "correct", right.as_dict()

    factor = 1.02
    broken = check_gradients(_scaled_net(factor), nn.CrossEntropyLoss(), x, y)
    assert broken.verdict == "wrong"
    by_name = {t.name: t for t in broken.tensors}
    assert by_name["2.weight"].verdict == "wrong"
    # Every coordinate is checked: g = factor · g_num, so the error is |factor − 1| / (1 + factor).
    expected = (factor - 1) / (1 + factor)
    assert by_name["2.weight"].relative_error == pytest.approx(expected, rel=1e-6)
    assert broken.worst().name == "2.weight"
    assert any("worst tensor: 2.weight" in note for note in broken.notes)
    # The layers before it receive the true gradient (its input gradient is right).
    assert all(t.verdict == "correct" for name, t in by_name.items() if name != "2.weight")


@pytest.mark.parametrize("error,verdict", [
    (0.0, "correct"), (9.9e-8, "correct"), (1e-7, "worth a look"), (9.9e-6, "worth a look"),
    (1e-5, "suspect"), (9.9e-4, "suspect"), (1e-3, "wrong"), (1.0, "wrong"),
])
def test_verdict_thresholds(error, verdict):
    assert verdict_for(error) == verdict


def test_relative_error_is_the_issue_formula():
    a = torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64)
    b = torch.tensor([1.5, 2.0, -2.0], dtype=torch.float64)
    expected = torch.linalg.vector_norm(a - b) / (torch.linalg.vector_norm(a)
                                                  + torch.linalg.vector_norm(b))
    assert relative_error(a, b) == pytest.approx(float(expected), rel=1e-15)
    assert relative_error(torch.zeros(3), torch.zeros(3)) == 0.0


def test_large_tensors_are_sampled_with_the_seed():
    model = _network([{"type": "linear", "out_features": 40}, {"type": "tanh"},
                      {"type": "linear", "out_features": 3}], (10,))
    x, y = _batch((10,))
    first = check_gradients(model, nn.CrossEntropyLoss(), x, y, seed=5)
    again = check_gradients(model, nn.CrossEntropyLoss(), x, y, seed=5)
    assert [t.coordinates for t in first.tensors] == [30, 30, 30, 3]
    assert first.as_dict() == again.as_dict()


def test_dropout_and_batchnorm_are_handled_and_said_so_and_nothing_of_the_caller_changes():
    layers = [{"type": "linear", "out_features": 8}, {"type": "batchnorm", "momentum": 0.5},
              {"type": "relu"}, {"type": "dropout", "p": 0.5},
              {"type": "linear", "out_features": 3}]
    model = _network(layers, (4,)).eval()
    before = copy.deepcopy(model.state_dict())
    x, y = _batch((4,), n=8)
    torch.manual_seed(123)
    rng, threads = torch.get_rng_state(), torch.get_num_threads()

    report = check_gradients(model, nn.CrossEntropyLoss(), x, y)

    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.get_num_threads() == threads
    assert report.verdict == "correct", report.as_dict()
    notes = " ".join(report.notes)
    assert "dropout: train mode with one fixed mask" in notes
    assert "batchnorm: train mode, normalising with this batch's own statistics" in notes
    assert "running statistics are not changed" in notes
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():  # running_mean, running_var, num_batches_tracked too
        assert torch.equal(after[key], value), key
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_a_vanishing_gradient_is_worth_a_look_not_wrong_and_a_zero_one_is_zero():
    deep = [{"type": "linear", "out_features": 6}, {"type": "sigmoid"}] * 10
    model = _network([*deep, {"type": "linear", "out_features": 3}], (4,))
    report = check_gradients(model, nn.CrossEntropyLoss(), *_batch((4,), n=8))
    first = report.tensors[0]
    assert first.name == "layers.0.weight"
    assert first.relative_error > 1e-3  # rounding swamps a gradient this small
    assert first.verdict == "worth a look"
    assert report.verdict == "worth a look"
    assert report.tensors[-1].verdict == "correct"  # the last layer's gradient is not small
    assert any(n.startswith("layers.0.weight") and "(vanishing)" in n for n in report.notes)

    # A bias right before batchnorm has an exact-zero gradient: its difference is noise.
    model = _network(*CASES["batchnorm-1d"])
    report = check_gradients(model, nn.CrossEntropyLoss(), *_batch((4,)))
    bias = report.tensors[1]
    assert (bias.name, bias.relative_error, bias.verdict) == ("layers.0.bias", 0.0, "correct")
    assert any(n.startswith("layers.0.bias: autograd's gradient is zero") for n in report.notes)


def test_frozen_tensors_are_named_and_skipped():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    model[0].requires_grad_(False)
    report = check_gradients(model, nn.CrossEntropyLoss(), *_batch((4,)))
    assert [t.name for t in report.tensors] == ["2.weight", "2.bias"]
    assert report.verdict == "correct"
    assert "0.weight, 0.bias: frozen (not trained), so not checked" in report.notes


def test_a_network_without_dropout_or_batchnorm_says_nothing_about_them():
    report = check_gradients(_network(*CASES["tanh"]), nn.CrossEntropyLoss(), *_batch((4,)))
    assert not any(n.startswith(("dropout", "batchnorm")) for n in report.notes)


def test_the_preflight_fails_on_a_wrong_gradient_naming_the_tensor():
    x, y = _batch((4,), n=10)
    sink = SimpleNamespace(summary=Summary(), progress={}, flush_all=lambda: None)
    # "gradcheck": true runs the check with the preflight off too, and fails on "wrong".
    spec = JobSpec.model_validate({**_moons_spec(gradcheck=True), "preflight": {"enabled": False}})
    job = SimpleNamespace(summary={}, progress={"total_steps": 7})
    data = SimpleNamespace(x_train=x, y_train=y, task="classification")

    with pytest.raises(GradientCheckFailed, match=r"2\.weight \[5\] has relative error"):
        _preflight(spec, job, False, _scaled_net(1.5), data, torch.device("cpu"), sink)
    assert sink.summary.as_dict()["gradcheck"]["verdict"] == "wrong"
    assert sink.summary.as_dict()["gradcheck"]["batch_size"] == 8
    assert "preflight" not in sink.summary.as_dict()

    resumed = SimpleNamespace(summary=Summary(), progress={}, flush_all=None)
    job.summary = {"gradcheck": {"verdict": "correct"}, "preflight": {"verdict": "pass"}}
    _preflight(spec, job, True, _scaled_net(1.5), data, torch.device("cpu"), resumed)  # no check
    assert resumed.summary.as_dict()["gradcheck"] == {"verdict": "correct"}
    assert resumed.summary.as_dict()["preflight"] == {"verdict": "pass"}


def test_the_default_preflight_reports_a_wrong_gradient_as_a_failed_check_and_trains_on():
    x, y = _batch((4,), n=10)
    sink = SimpleNamespace(summary=Summary(), progress={}, flush_all=lambda: None)
    spec = JobSpec.model_validate(_moons_spec())
    data = SimpleNamespace(x_train=x, y_train=y, task="classification")
    _preflight(spec, SimpleNamespace(summary={}), False, _scaled_net(1.5), data,
               torch.device("cpu"), sink)  # stop_on_fail is false: no exception
    report = sink.summary.as_dict()["preflight"]
    check = {c["name"]: c for c in report["checks"]}["gradcheck"]
    assert check["verdict"] == "fail" and "2.weight" in check["evidence"]
    assert "gradcheck" not in sink.summary.as_dict()  # the full report only when asked


def _moons_spec(**extra) -> dict:
    return {
        "dataset": {"name": "moons", "n_samples": 200},
        "model": {"layers": [{"type": "linear", "out_features": 8}, {"type": "tanh"},
                             {"type": "dropout", "p": 0.2},
                             {"type": "linear", "out_features": 2}]},
        "training": {"epochs": 2, "batch_size": 32, "seed": 3},
        **extra,
    }


def test_post_gradcheck_reports_every_tensor(client):
    response = client.post("/v1/gradcheck", json=_moons_spec(), params={"batch_size": 6})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] == "correct"
    assert body["batch_size"] == 6
    assert body["eps"] == 1e-6
    assert [(t["name"], t["shape"]) for t in body["tensors"]] == [
        ("layers.0.weight", [8, 2]), ("layers.0.bias", [8]),
        ("layers.3.weight", [2, 8]), ("layers.3.bias", [2]),
    ]
    assert all(t["verdict"] == "correct" and t["relative_error"] < 1e-7 for t in body["tensors"])
    assert any(note.startswith("dropout:") for note in body["notes"])
    assert body == _reference_check(_moons_spec(), 6)


def _reference_check(document: dict, n: int) -> dict:
    """What POST /v1/gradcheck should answer, from its parts: the network seeded with
    training.seed, the first n samples of the training split, standardised by themselves."""
    spec = JobSpec.model_validate(document)
    arrays = datasets.load(spec.dataset.name, spec.dataset.options())
    kept, _ = datasets.split_indices(len(arrays.x_train), spec.dataset.val_fraction,
                                     spec.dataset.seed, arrays.y_train)
    x = torch.from_numpy(arrays.x_train[kept[:n]]).double()
    x = (x - x.mean(dim=0)) / x.std(dim=0, unbiased=False)
    y = torch.from_numpy(arrays.y_train[kept[:n]])
    torch.manual_seed(spec.training.seed)
    model, _ = build_model(spec.model, (2,))
    return check_gradients(model, nn.CrossEntropyLoss(), x, y, seed=spec.training.seed).as_dict()


@pytest.mark.parametrize("spec,params,field,words", [
    (_moons_spec(model={"layers": [{"type": "linear", "out_features": 0}]}), {},
     "model.layers[0].out_features", "model.layers[0] (linear).out_features"),
    ({"dataset": {"name": "digits"}, "model": {"layers": [{"type": "linear",
                                                           "out_features": 10}]}}, {},
     "model.layers[0]", "add a flatten layer first"),
    (_moons_spec(), {"batch_size": 1}, "query.batch_size", "batch_size"),
    ({"dataset": {"name": "digits"}, "model": {"layers": [
        {"type": "flatten"}, {"type": "linear", "out_features": 4000},
        {"type": "linear", "out_features": 10}]}}, {},
     "model", '"gradcheck": true'),
])
def test_a_bad_or_too_large_spec_is_422_naming_the_field(client, spec, params, field, words):
    response = client.post("/v1/gradcheck", json=spec, params=params)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["field"] == field
    assert words in detail["message"]


def test_the_gradcheck_preflight_puts_its_report_in_the_summary(client, worker):
    response = client.post("/v1/jobs", json=_moons_spec(gradcheck=True))
    assert response.status_code == 201, response.text
    job = wait_for_state(client, response.json()["id"], {"succeeded", "failed", "cancelled"})
    assert job["state"] == "succeeded", job["error"]
    report = job["summary"]["gradcheck"]
    assert report["verdict"] == "correct"
    assert report["batch_size"] == 8
    assert [t["name"] for t in report["tensors"]] == [
        "layers.0.weight", "layers.0.bias", "layers.3.weight", "layers.3.bias"]
    assert "test" in job["summary"] and "latest" in job["summary"]  # the metrics are kept too
