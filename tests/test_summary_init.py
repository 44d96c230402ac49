"""The model summary (FLOPs, trainable and non-trainable parameters), the initialisers and the
softmax-before-cross_entropy warning, each against a direct PyTorch reference.

Initialisers: the built weights equal torch.nn.init's on the same seed (torch.equal), and a
large layer's drawn statistics match the scheme's formula. FLOPs: a hand computation per layer
type, and torch.utils.flop_counter on a real forward for linear and conv. Parameter counts: the
real module's requires_grad flags and buffers. Mostly pure; the HTTP cases use the session API.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import httpx
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core.errors import pydantic_details
from core.jobspec import JobSpec
from models import spec as s
from models.build import Network, SpecError, build_model, summarize
from models.flops import layer_flops
from models.layers import REGISTRY, Residual
from tests.test_layers_catalogue import CASES as CATALOGUE_CASES
from tests.test_models import CASES as MODEL_CASES
from tests.test_residual_maxout import CASES as RESIDUAL_MAXOUT_CASES
from worker.optim import build_optimizer


def model_spec(*layers: dict, **fields) -> s.ModelSpec:
    return s.ModelSpec.model_validate({"layers": list(layers), **fields})


def _first_layer(*layers: dict, input_shape: tuple[int, ...], seed: int = 0, **fields
                 ) -> nn.Module:
    torch.manual_seed(seed)
    net, _ = build_model(model_spec(*layers, **fields), input_shape)
    return net.layers[0]


# --- initialisers: the same draws as torch.nn.init -------------------------------------------

FAN_IN, FAN_OUT = 512, 384

# (scheme as the spec writes it, the activation after the layer, torch.nn.init on the weight)
WEIGHT_ORACLES: list[tuple[object, str | None, Callable[[torch.Tensor], object]]] = [
    ("normal", None, lambda w: nn.init.normal_(w, 0.0, 0.01)),
    ({"type": "normal", "std": 0.05}, None, lambda w: nn.init.normal_(w, 0.0, 0.05)),
    ("uniform", None, lambda w: nn.init.uniform_(w, -0.05, 0.05)),
    ({"type": "uniform", "bound": 0.2}, None, lambda w: nn.init.uniform_(w, -0.2, 0.2)),
    ({"type": "uniform", "a": -0.01, "b": 0.03}, None, lambda w: nn.init.uniform_(w, -0.01, 0.03)),
    ("orthogonal", "relu", lambda w: nn.init.orthogonal_(w, gain=1.0)),
    ({"type": "orthogonal", "gain": 1.5}, None, lambda w: nn.init.orthogonal_(w, gain=1.5)),
    ("zeros", None, nn.init.zeros_),
    ({"type": "he_normal"}, "relu", lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")),
    ("he_uniform", "relu", lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu")),
    ("xavier_normal", "tanh",
     lambda w: nn.init.xavier_normal_(w, gain=nn.init.calculate_gain("tanh"))),
    ("xavier_uniform", "sigmoid", lambda w: nn.init.xavier_uniform_(w, gain=1.0)),
]


def _ids(cases: list) -> list[str]:
    return [str(case[0]) for case in cases]


@pytest.mark.parametrize(("scheme", "activation", "reference"), WEIGHT_ORACLES,
                         ids=_ids(WEIGHT_ORACLES))
def test_weight_init_equals_torch_nn_init_on_the_same_seed(scheme, activation, reference) -> None:
    after = [{"type": activation}] if activation else []
    ours = _first_layer({"type": "linear", "out_features": 64}, *after, input_shape=(48,),
                        init=scheme)
    torch.manual_seed(0)
    ref = nn.Linear(48, 64)  # constructed first, as the builder does: torch draws its default
    with torch.no_grad():
        reference(ref.weight)
        nn.init.zeros_(ref.bias)
    assert torch.equal(ours.weight, ref.weight)
    assert torch.equal(ours.bias, ref.bias)


def test_orthogonal_init_on_conv_flattens_the_kernel_as_torch_does() -> None:
    ours = _first_layer({"type": "conv2d", "out_channels": 6, "kernel_size": 3,
                         "init": {"type": "orthogonal", "gain": 2.0}}, input_shape=(4, 8, 8))
    torch.manual_seed(0)
    ref = nn.Conv2d(4, 6, 3)
    with torch.no_grad():
        nn.init.orthogonal_(ref.weight, gain=2.0)
    assert torch.equal(ours.weight, ref.weight)
    rows = ours.weight.detach().flatten(1)  # 6 rows of 36: orthogonal rows of norm `gain`
    assert torch.allclose(rows @ rows.T, 4.0 * torch.eye(6), atol=1e-5)


def _wide_weight(init, activation: str | None = None) -> torch.Tensor:
    after = [{"type": activation}] if activation else []
    return _first_layer({"type": "linear", "out_features": FAN_OUT}, *after,
                        input_shape=(FAN_IN,), init=init).weight.detach()


# (scheme, expected mean, expected std, the interval every draw lies in or None)
WEIGHT_STATISTICS = [
    ("normal", 0.0, 0.01, None),
    ({"type": "normal", "std": 0.05}, 0.0, 0.05, None),
    ({"type": "uniform", "bound": 0.1}, 0.0, 0.2 / math.sqrt(12), (-0.1, 0.1)),
    ({"type": "uniform", "a": 0.0, "b": 0.4}, 0.2, 0.4 / math.sqrt(12), (0.0, 0.4)),
    # FAN_OUT rows of FAN_IN, orthonormal and scaled: each entry has variance gain² / FAN_IN.
    ({"type": "orthogonal", "gain": 2.0}, 0.0, 2.0 / math.sqrt(FAN_IN), None),
]


@pytest.mark.parametrize(("scheme", "mean", "std", "interval"), WEIGHT_STATISTICS,
                         ids=_ids(WEIGHT_STATISTICS))
def test_drawn_weight_statistics_match_the_scheme(scheme, mean, std, interval) -> None:
    weight = _wide_weight(scheme)
    assert weight.shape == (FAN_OUT, FAN_IN)
    assert abs(weight.mean().item() - mean) < 0.02 * std + 1e-9
    assert weight.std().item() == pytest.approx(std, rel=0.02)
    if interval is not None:
        low, high = interval
        assert low <= weight.min().item() and weight.max().item() <= high
        assert weight.min().item() < low + 0.01 * (high - low)  # the whole range is reached
        assert weight.max().item() > high - 0.01 * (high - low)


def test_orthogonal_rows_are_orthonormal_times_the_gain() -> None:
    weight = _wide_weight({"type": "orthogonal", "gain": 0.5}).double()
    assert torch.allclose(weight @ weight.T, 0.25 * torch.eye(FAN_OUT, dtype=torch.float64),
                          atol=1e-5)


def test_orthogonal_ignores_the_activation_and_he_takes_it() -> None:
    # orthogonal's gain is the scheme's own; he_normal's comes from the relu after the layer.
    assert torch.equal(_wide_weight("orthogonal", "relu"), _wide_weight("orthogonal"))
    assert not torch.equal(_wide_weight("he_normal", "relu"), _wide_weight("he_normal"))


# --- bias initialisation ---------------------------------------------------------------------

BIAS_ORACLES: list[tuple[object, Callable[[torch.Tensor], object]]] = [
    ("zeros", nn.init.zeros_),
    ({"type": "constant", "value": 0.1}, lambda b: nn.init.constant_(b, 0.1)),
    ("normal", lambda b: nn.init.normal_(b, 0.0, 0.01)),
    ({"type": "normal", "std": 0.5}, lambda b: nn.init.normal_(b, 0.0, 0.5)),
    ({"type": "uniform", "a": 0.0, "b": 0.2}, lambda b: nn.init.uniform_(b, 0.0, 0.2)),
    ("torch_default", lambda b: None),
]


@pytest.mark.parametrize(("scheme", "reference"), BIAS_ORACLES, ids=_ids(BIAS_ORACLES))
def test_bias_init_equals_torch_nn_init_after_the_weight(scheme, reference) -> None:
    ours = _first_layer({"type": "linear", "out_features": 64}, {"type": "relu"},
                        input_shape=(48,), init="he_normal", bias_init=scheme)
    torch.manual_seed(0)
    ref = nn.Linear(48, 64)
    with torch.no_grad():
        nn.init.kaiming_normal_(ref.weight, nonlinearity="relu")
        reference(ref.bias)
    assert torch.equal(ours.weight, ref.weight)
    assert torch.equal(ours.bias, ref.bias)


def test_bias_statistics_over_a_long_bias() -> None:
    layer = {"type": "linear", "out_features": 20_000}
    bias = _first_layer(layer, input_shape=(2,), init="zeros",
                        bias_init={"type": "normal", "std": 0.3}).bias.detach()
    assert abs(bias.mean().item()) < 0.02 * 0.3
    assert bias.std().item() == pytest.approx(0.3, rel=0.03)
    bias = _first_layer(layer, input_shape=(2,), init="zeros",
                        bias_init={"type": "uniform", "bound": 0.5}).bias.detach()
    assert bias.std().item() == pytest.approx(1.0 / math.sqrt(12), rel=0.03)
    assert -0.5 <= bias.min().item() < -0.49 and 0.49 < bias.max().item() <= 0.5


def test_bias_defaults_and_overrides() -> None:
    linear = {"type": "linear", "out_features": 8}
    # Default: zeros under a weight scheme, torch's own bias under torch_default.
    assert torch.count_nonzero(_first_layer(linear, input_shape=(4,), init="he_normal").bias) == 0
    torch.manual_seed(0)
    ref = nn.Linear(4, 8)
    assert torch.equal(_first_layer(linear, input_shape=(4,)).bias, ref.bias)
    # A layer's bias_init wins over the model's; the model's applies elsewhere.
    net_layers = [
        {**linear, "bias_init": {"type": "constant", "value": -1.0}}, {"type": "relu"}, linear,
    ]
    torch.manual_seed(0)
    net, _ = build_model(model_spec(*net_layers, init="he_normal",
                                    bias_init={"type": "constant", "value": 0.5}), (4,))
    assert torch.equal(net.layers[0].bias, torch.full((8,), -1.0))
    assert torch.equal(net.layers[2].bias, torch.full((8,), 0.5))


def test_the_string_and_object_forms_build_the_same_network() -> None:
    layers = [{"type": "linear", "out_features": 16}, {"type": "tanh"},
              {"type": "linear", "out_features": 3}]
    by_name = _first_layer(*layers, input_shape=(5,), init="xavier_normal", bias_init="normal")
    by_object = _first_layer(*layers, input_shape=(5,), init={"type": "xavier_normal"},
                             bias_init={"type": "normal", "std": 0.01})
    assert torch.equal(by_name.weight, by_object.weight)
    assert torch.equal(by_name.bias, by_object.bias)
    # The stored document (the object form) validates back to the same spec.
    spec = model_spec(*layers, init="he_uniform")
    assert s.ModelSpec.model_validate(spec.model_dump(mode="json")) == spec


# --- bad init specs: the field path and what to change ---------------------------------------

BAD_INITS = [
    ({"init": "he_nromal"}, "model.init", "unknown type 'he_nromal'"),
    ({"init": {"type": "normal", "std": -1}}, "model.init.std", "greater than 0"),
    ({"init": {"type": "normal", "gain": 2}}, "model.init.gain", "unknown field"),
    ({"init": {"type": "uniform", "a": 0.1, "b": -0.1}}, "model.init", "must be less than b"),
    ({"init": {"type": "uniform", "a": 0.1}}, "model.init", "give both a and b"),
    ({"init": {"type": "uniform", "bound": 0.1, "a": 0.0, "b": 1.0}}, "model.init",
     "not both"),
    ({"init": {"type": "orthogonal", "gain": 0}}, "model.init.gain", "greater than 0"),
    ({"init": {"std": 0.1}}, "model.init", "needs a 'type' field"),
    ({"init": 3}, "model.init", "give a scheme name"),
    ({"bias_init": "xavier_normal"}, "model.bias_init",
     "expected one of 'torch_default', 'zeros', 'constant', 'normal', 'uniform'"),
    ({"bias_init": "constant"}, "model.bias_init", 'write {"type": "constant", "value": 0.1}'),
    ({"bias_init": {"type": "constant"}}, "model.bias_init.value", "required field is missing"),
    ({"layers": [{"type": "linear", "out_features": 2, "init": {"type": "normal", "std": 0}}]},
     "model.layers[0].init.std", "greater than 0"),
    ({"layers": [{"type": "linear", "out_features": 2, "bias": False, "bias_init": "zeros"}]},
     "model.layers[0]", "remove bias_init"),
    ({"layers": [{"type": "relu", "frozen": True}, {"type": "linear", "out_features": 2}]},
     "model.layers[0].frozen", "unknown field"),
]


def _job(**model_fields) -> dict:
    model = {"layers": [{"type": "linear", "out_features": 2}], **model_fields}
    return {"dataset": {"name": "moons", "n_samples": 100}, "model": model,
            "training": {"epochs": 1, "batch_size": 32}}


@pytest.mark.parametrize(("model_fields", "field", "phrase"), BAD_INITS,
                         ids=[case[1] + ":" + case[2] for case in BAD_INITS])
def test_bad_init_specs_name_the_field(model_fields, field, phrase) -> None:
    document = _job(**model_fields)
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(document)
    first = pydantic_details(caught.value.errors(), document)[0]
    assert first["field"] == field, first
    assert phrase in first["message"], first
    assert first["message"].split(": ", 1)[0].replace(" (linear)", "").replace(
        " (relu)", "") == field


@pytest.mark.parametrize("case", [BAD_INITS[1], BAD_INITS[9], BAD_INITS[11]],
                         ids=["model.init.std", "model.bias_init", "layer-init"])
def test_bad_init_specs_are_422s_over_http(client: httpx.Client, case) -> None:
    model_fields, field, phrase = case
    response = client.post("/v1/jobs/validate", json=_job(**model_fields))
    assert response.status_code == 422, response.text
    first = response.json()["detail"][0]
    assert first["field"] == field, first
    assert phrase in first["message"], first


# --- FLOPs -----------------------------------------------------------------------------------

# (layer, per-example input shape, FLOPs by hand: a multiply-add is 2)
FLOP_CASES = [
    ({"type": "linear", "out_features": 7}, (5,), 2 * 5 * 7 + 7),
    ({"type": "linear", "out_features": 7, "bias": False}, (5,), 2 * 5 * 7),
    # (4, 9, 9) -> (6, 4, 4): per output 2·(4/2)·3·3, plus the bias
    ({"type": "conv2d", "out_channels": 6, "kernel_size": 3, "stride": 2, "dilation": 2,
      "padding": 1, "groups": 2}, (4, 9, 9), 6 * 4 * 4 * (2 * 2 * 9) + 6 * 4 * 4),
    ({"type": "conv2d", "out_channels": 8, "kernel_size": [3, 1], "bias": False}, (2, 5, 5),
     8 * 3 * 5 * (2 * 2 * 3)),
    ({"type": "conv1d", "out_channels": 4, "kernel_size": 3}, (3, 10), 4 * 8 * (2 * 3 * 3) + 32),
    ({"type": "conv1d", "out_channels": 6, "kernel_size": 2, "stride": 3, "groups": 3}, (3, 10),
     6 * 3 * (2 * 1 * 2) + 6 * 3),
    # 12 = 4 units × 3 pieces: the projection, its bias, then 2 comparisons per unit
    ({"type": "maxout", "out_features": 4, "pieces": 3}, (6,), 2 * 6 * 12 + 12 + 4 * 2),
    # (2, 6, 6) -> 4·3 channels of (6, 6), then 2 comparisons per output element
    ({"type": "maxout_conv2d", "out_channels": 4, "pieces": 3, "padding": 1}, (2, 6, 6),
     12 * 36 * (2 * 2 * 9) + 12 * 36 + 4 * 36 * 2),
    ({"type": "maxout_conv1d", "out_channels": 3, "kernel_size": 3, "bias": False}, (2, 9),
     6 * 7 * (2 * 2 * 3) + 3 * 7 * 1),
    ({"type": "batchnorm"}, (4, 5, 5), 2 * 100),
    ({"type": "batchnorm"}, (10,), 2 * 10),
    ({"type": "layernorm"}, (3, 10), 7 * 30),
    ({"type": "maxpool2d", "kernel_size": 2}, (2, 4, 4), 2 * 2 * 2 * 3),
    ({"type": "avgpool2d", "kernel_size": [2, 3], "stride": 1}, (1, 4, 4), 3 * 2 * 6),
    ({"type": "maxpool1d", "kernel_size": 3}, (2, 9), 2 * 3 * 2),
    ({"type": "avgpool1d", "kernel_size": 2}, (3, 8), 3 * 4 * 2),
    ({"type": "global_avg_pool"}, (3, 4, 4), 48),
    ({"type": "relu"}, (10,), 10),
    ({"type": "gelu"}, (2, 5), 10),
    ({"type": "prelu", "num_parameters": "channel"}, (3, 4), 12),
    ({"type": "softmax"}, (10,), 30),
    ({"type": "log_softmax"}, (10,), 30),
    ({"type": "dropout"}, (10,), 0),
    ({"type": "flatten"}, (2, 5), 0),
    ({"type": "reshape", "shape": [5, 2]}, (10,), 0),
    ({"type": "identity"}, (10,), 0),
]


@pytest.mark.parametrize(("layer", "input_shape", "flops"), FLOP_CASES,
                         ids=[f"{c[0]['type']}-{i}" for i, c in enumerate(FLOP_CASES)])
def test_layer_flops_match_a_hand_computation(layer, input_shape, flops) -> None:
    summary = summarize(model_spec(layer), input_shape)
    assert summary.layers[0].flops == flops
    assert summary.total_flops == flops


def test_a_residual_block_counts_its_layers_its_projection_and_the_sum() -> None:
    block = {"type": "residual", "layers": [{"type": "linear", "out_features": 6},
                                            {"type": "relu"}]}
    rows = summarize(model_spec(block), (4,)).layers
    assert [(row.name, row.flops) for row in rows] == [
        ("layers.0.layers.0", 2 * 4 * 6 + 6), ("layers.0.layers.1", 6),
        ("layers.0.shortcut", 2 * 4 * 6),  # a linear projection without bias
        ("layers.0", 6),  # the addition
    ]


# Linear and conv layers: torch's own counter on a real forward of one example counts the
# multiply-adds as we do, and leaves out the bias additions, which we count.
COUNTER_CASES = [case for case in FLOP_CASES if case[0]["type"] in ("linear", "conv1d", "conv2d")]


@pytest.mark.parametrize(("layer", "input_shape", "flops"), COUNTER_CASES,
                         ids=[f"{c[0]['type']}-{i}" for i, c in enumerate(COUNTER_CASES)])
def test_linear_and_conv_flops_agree_with_torch_flop_counter(layer, input_shape, flops) -> None:
    net, summary = build_model(model_spec(layer), input_shape)
    module = net.layers[0]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = module(torch.randn(1, *input_shape))
    bias_additions = out.numel() if module.bias is not None else 0
    assert counter.get_total_flops() > 0
    assert summary.layers[0].flops == counter.get_total_flops() + bias_additions


def test_maxout_projection_agrees_with_torch_flop_counter() -> None:
    net, summary = build_model(model_spec({"type": "maxout", "out_features": 5, "pieces": 4,
                                           "bias": False}), (7,))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(1, 7))
    comparisons = 5 * 3  # the counter leaves out the max over each unit's pieces
    assert summary.layers[0].flops == counter.get_total_flops() + comparisons


def _leaf_shapes(net: nn.Module, input_shape: tuple[int, ...]) -> list[tuple]:
    """(module, per-example input shape, output shape) for every leaf module on a forward."""
    seen: list[tuple] = []

    def record(module, inputs, output):
        seen.append((module, tuple(inputs[0].shape[1:]), tuple(output.shape[1:])))

    containers = (Network, nn.Sequential, Residual)
    hooks = [m.register_forward_hook(record) for m in net.modules()
             if not isinstance(m, containers)]
    with torch.no_grad():
        net.eval()(torch.randn(2, *input_shape))
    for hook in hooks:
        hook.remove()
    return seen


ALL_CASES = {**MODEL_CASES, **CATALOGUE_CASES, **RESIDUAL_MAXOUT_CASES}


def test_the_cases_cover_every_layer_type() -> None:
    covered = {layer["type"] for case in ALL_CASES.values() for layer in _flat(case[0])}
    assert covered == set(REGISTRY)


def _flat(layers: list[dict]) -> list[dict]:
    return [x for layer in layers for x in [layer, *_flat(layer.get("layers", []))]]


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_every_layer_module_has_a_flop_rule(case: str) -> None:
    layers, input_shape = ALL_CASES[case][0], ALL_CASES[case][1]
    net, _ = build_model(model_spec(*layers), input_shape)
    for module, in_shape, out_shape in _leaf_shapes(net, input_shape):
        assert layer_flops(module, in_shape, out_shape) is not None, type(module).__name__


def test_flops_and_counts_need_no_allocation() -> None:
    # A 10¹²-parameter layer (4 TB in float32) is summarised on the meta device in no time.
    summary = summarize(model_spec({"type": "linear", "out_features": 1_000_000}), (1_000_000,))
    assert summary.total_params == 10**12 + 10**6
    assert summary.total_flops == 2 * 10**12 + 10**6


# --- trainable and non-trainable parameters --------------------------------------------------

FROZEN_NET = [
    {"type": "linear", "out_features": 6, "frozen": True}, {"type": "batchnorm"},
    {"type": "relu"}, {"type": "layernorm", "frozen": True},
    {"type": "linear", "out_features": 3},
]


def test_trainable_and_non_trainable_counts_match_the_real_module() -> None:
    net, summary = build_model(model_spec(*FROZEN_NET), (4,))
    rows = {row.name: row for row in summary.layers}
    assert [(r.params, r.trainable_params, r.non_trainable_params) for r in rows.values()] == [
        (30, 0, 30),  # frozen linear 4·6 + 6
        (12, 12, 12),  # batchnorm: weight and bias trained, running mean and variance not
        (0, 0, 0),
        (12, 0, 12),  # frozen layernorm
        (21, 21, 0),
    ]
    # The same totals read off the real network: requires_grad and the float buffers.
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    statistics = sum(b.numel() for b in net.buffers() if b.is_floating_point())
    assert summary.trainable_params == trainable == 12 + 21
    assert summary.non_trainable_params == frozen + statistics == 30 + 12 + 12
    assert summary.total_params == sum(p.numel() for p in net.parameters())
    assert summarize(model_spec(*FROZEN_NET), (4,)).as_dict() == summary.as_dict()


def test_a_frozen_batchnorm_counts_its_parameters_and_statistics_as_non_trainable() -> None:
    rows = summarize(model_spec({"type": "conv1d", "out_channels": 5},
                                {"type": "batchnorm", "frozen": True}), (2, 9)).layers
    assert (rows[1].params, rows[1].trainable_params, rows[1].non_trainable_params) == (
        10, 0, 20)


def test_a_network_with_everything_frozen_is_an_error() -> None:
    with pytest.raises(SpecError) as caught:
        summarize(model_spec({"type": "linear", "out_features": 2, "frozen": True}), (4,))
    assert caught.value.field == "model.layers"
    assert "set frozen to false" in caught.value.message


def _optimizer_job(optimizer: dict) -> JobSpec:
    return JobSpec.model_validate({
        "dataset": {"name": "moons", "n_samples": 100},
        "model": {"init": "he_normal", "layers": FROZEN_NET},
        "optimizer": optimizer,
    })


@pytest.mark.parametrize("optimizer", [
    {"type": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.1},
    {"type": "adamw", "lr": 0.01, "weight_decay": 0.1, "exclude_from_weight_decay": ["bias"]},
    {"type": "adam", "lr": 0.01, "exclude_from_weight_decay": ["norm"]},
], ids=["sgd", "adamw-groups", "adam-norm-groups"])
def test_frozen_layers_keep_their_weights_through_optimizer_steps(optimizer: dict) -> None:
    spec = _optimizer_job(optimizer)
    torch.manual_seed(0)
    net, _ = build_model(spec.model, (4,))
    before = copy.deepcopy(net.state_dict())
    opt = build_optimizer(spec, net)
    held = {id(p) for group in opt.param_groups for p in group["params"]}
    assert held == {id(p) for p in net.parameters() if p.requires_grad}
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=gen), torch.randint(0, 3, (16,), generator=gen)
    net.train()
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    after = net.state_dict()
    for name in ("layers.0.weight", "layers.0.bias", "layers.3.weight", "layers.3.bias"):
        assert torch.equal(after[name], before[name]), name
    for name in ("layers.1.weight", "layers.4.weight", "layers.4.bias"):
        assert not torch.equal(after[name], before[name]), name


# --- the softmax warning, and the summary over HTTP ------------------------------------------

def _digits(*head: dict) -> dict:
    return {
        "dataset": {"name": "digits"},
        "model": {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 32},
                             {"type": "relu"}, {"type": "linear", "out_features": 10}, *head]},
        "training": {"epochs": 1, "batch_size": 64},
    }


def test_softmax_before_cross_entropy_is_a_warning_naming_the_layer(client: httpx.Client) -> None:
    response = client.post("/v1/jobs/validate", json=_digits({"type": "softmax"}))
    assert response.status_code == 200, response.text
    notes = [n for n in response.json()["warnings"] if "softmax" in n]
    assert len(notes) == 1, response.json()["warnings"]
    assert notes[0].startswith("model.layers[4] (softmax): cross_entropy takes logits")
    assert "remove this softmax layer" in notes[0]
    # Through a trailing dropout too; the layer named is still the softmax.
    response = client.post("/v1/jobs/validate",
                           json=_digits({"type": "softmax"}, {"type": "dropout", "p": 0.1}))
    assert any(n.startswith("model.layers[4] (softmax)") for n in response.json()["warnings"])


@pytest.mark.parametrize("head", [[], [{"type": "log_softmax"}]], ids=["logits", "log_softmax"])
def test_no_softmax_warning_without_a_final_softmax(client: httpx.Client, head) -> None:
    response = client.post("/v1/jobs/validate", json=_digits(*head))
    assert response.status_code == 200, response.text
    assert not [n for n in response.json()["warnings"] if "softmax" in n]


def test_validate_and_job_detail_return_the_summary_and_the_warning(client: httpx.Client
                                                                     ) -> None:
    spec = _digits({"type": "softmax"})
    spec["model"]["layers"][1]["frozen"] = True
    spec["model"]["layers"].insert(2, {"type": "batchnorm"})
    expected = summarize(JobSpec.model_validate(spec).model, (1, 8, 8)).as_dict()
    validated = client.post("/v1/jobs/validate", json=spec)
    assert validated.status_code == 200, validated.text
    assert validated.json()["model"] == expected
    assert expected["trainable_params"] == 64 + 330  # batchnorm's 2·32 and the last linear
    assert expected["non_trainable_params"] == 64 * 32 + 32 + 64  # frozen linear, statistics
    created = client.post("/v1/jobs", json=spec | {"name": "summary-and-warning"})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    try:
        model = client.get(f"/v1/jobs/{job_id}").json()["model"]
        listed = ("warnings", "named_warnings")
        assert {k: v for k, v in model.items() if k not in listed} == expected
        assert model["named_warnings"] == []  # the doubled softmax has no name (yet)
        assert any(n.startswith("model.layers[5] (softmax)") for n in model["warnings"])
    finally:
        client.post(f"/v1/jobs/{job_id}/cancel")
