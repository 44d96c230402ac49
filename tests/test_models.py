"""The network builder against hand-built PyTorch: every layer type, initialisation, shapes.

Pure: no database, no broker. Each layer is built twice, once from a spec with
`build_model` and once by hand with plain torch under the same seed, and the two must agree
on weights, outputs and parameter counts; `summarize` must predict the real shapes.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from models import spec as s
from models.build import SpecError, build_model, summarize
from models.layers import REGISTRY
from tests.test_layers_catalogue import CASES as CATALOGUE_CASES
from tests.test_layers_catalogue import SHAPE_ERRORS as CATALOGUE_SHAPE_ERRORS
from tests.test_residual_maxout import CASES as RESIDUAL_MAXOUT_CASES


def model_spec(*layers: dict, init: str = "torch_default") -> s.ModelSpec:
    return s.ModelSpec.model_validate({"init": init, "layers": list(layers)})


# (layers, per-sample input shape, the same network written by hand in plain torch).
# The hand-built modules are created in the same order as the spec's, so under the same seed
# torch's default initialisation draws the same numbers.
CASES: dict[str, tuple[list[dict], tuple[int, ...], Callable[[], nn.Sequential]]] = {
    "linear": (
        [{"type": "linear", "out_features": 7}], (5,),
        lambda: nn.Sequential(nn.Linear(5, 7)),
    ),
    "linear-no-bias": (
        [{"type": "linear", "out_features": 7, "bias": False}], (5,),
        lambda: nn.Sequential(nn.Linear(5, 7, bias=False)),
    ),
    "conv1d": (
        [{"type": "conv1d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}],
        (3, 17),
        lambda: nn.Sequential(nn.Conv1d(3, 4, 3, stride=2, padding=1)),
    ),
    "conv2d": (
        [{"type": "conv2d", "out_channels": 6, "kernel_size": [3, 5], "stride": [1, 2],
          "padding": 2}],
        (2, 9, 11),
        lambda: nn.Sequential(nn.Conv2d(2, 6, (3, 5), stride=(1, 2), padding=2)),
    ),
    "conv2d-same": (
        [{"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": "same",
          "bias": False}],
        (2, 7, 7),
        lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding="same", bias=False)),
    ),
    "maxpool1d": (
        [{"type": "maxpool1d", "kernel_size": 3}], (2, 10),
        lambda: nn.Sequential(nn.MaxPool1d(3, stride=3)),
    ),
    "maxpool2d": (
        [{"type": "maxpool2d", "kernel_size": [2, 3], "stride": 1}], (3, 6, 7),
        lambda: nn.Sequential(nn.MaxPool2d((2, 3), stride=1)),
    ),
    "flatten": (
        [{"type": "flatten"}, {"type": "linear", "out_features": 3}], (2, 3, 4),
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(24, 3)),
    ),
    "reshape": (
        [{"type": "reshape", "shape": [2, -1]}, {"type": "conv1d", "out_channels": 3}], (12,),
        lambda: nn.Sequential(nn.Unflatten(1, (2, 6)), nn.Conv1d(2, 3, 3)),
    ),
    "dropout": (
        [{"type": "linear", "out_features": 6}, {"type": "dropout", "p": 0.3}], (4,),
        lambda: nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.3)),
    ),
    "batchnorm": (
        [{"type": "conv2d", "out_channels": 4}, {"type": "batchnorm", "momentum": 0.25,
                                                 "eps": 1e-3}],
        (2, 6, 6),
        lambda: nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4, eps=1e-3, momentum=0.25)),
    ),
    "relu": (
        [{"type": "linear", "out_features": 6}, {"type": "relu"}], (4,),
        lambda: nn.Sequential(nn.Linear(4, 6), nn.ReLU()),
    ),
    "sigmoid": (
        [{"type": "linear", "out_features": 6}, {"type": "sigmoid"}], (4,),
        lambda: nn.Sequential(nn.Linear(4, 6), nn.Sigmoid()),
    ),
    "tanh": (
        [{"type": "linear", "out_features": 6}, {"type": "tanh"}], (4,),
        lambda: nn.Sequential(nn.Linear(4, 6), nn.Tanh()),
    ),
}


def _spec_layer_types() -> set[str]:
    """The `type` tags of the LayerSpec discriminated union."""
    union = typing.get_args(s.LayerSpec)[0]
    tags = set()
    for cls in typing.get_args(union):
        (tag,) = typing.get_args(cls.model_fields["type"].annotation)
        tags.add(tag)
    return tags


def test_registry_and_spec_union_name_the_same_layers() -> None:
    assert set(REGISTRY) == _spec_layer_types()


def test_every_layer_type_has_a_reference_case() -> None:
    cases = [*CASES.values(), *CATALOGUE_CASES.values(), *RESIDUAL_MAXOUT_CASES.values()]
    covered = {layer["type"] for layers, _, _ in cases for layer in layers}
    assert covered == set(REGISTRY)


# Every layer type's reference cases, from this file and the catalogue's.
ALL_CASES = {**CASES, **CATALOGUE_CASES}


@pytest.mark.parametrize("case", list(ALL_CASES))
def test_layer_matches_hand_built_torch(case: str) -> None:
    layers, input_shape, make_reference = ALL_CASES[case]
    torch.manual_seed(0)
    net, summary = build_model(model_spec(*layers), input_shape)
    torch.manual_seed(0)
    ref = make_reference()

    # Same seed, same modules in the same order: identical weights, names aside.
    ours = {k.removeprefix("layers."): v for k, v in net.state_dict().items()}
    theirs = ref.state_dict()
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert_close(ours[key], theirs[key], rtol=0, atol=0, msg=key)

    n_params = sum(p.numel() for p in ref.parameters())
    assert sum(p.numel() for p in net.parameters()) == n_params
    assert summary.total_params == n_params
    for layer_summary, module in zip(summary.layers, ref, strict=True):
        assert layer_summary.params == sum(p.numel() for p in module.parameters())

    x = torch.randn(5, *input_shape)
    for train_mode in (True, False):
        net.train(train_mode)
        ref.train(train_mode)
        torch.manual_seed(1)  # dropout draws its mask from the global generator
        got = net(x)
        torch.manual_seed(1)
        want = ref(x)
        assert_close(got, want)
    # Batchnorm's running statistics moved the same way in both.
    for key, value in ref.state_dict().items():
        assert_close(net.state_dict()[f"layers.{key}"], value, msg=key)

    # Some layers start from constants (prelu, layernorm): random weights, copied across,
    # test the forward pass further.
    with torch.no_grad():
        for param in net.parameters():
            param.uniform_(-1.0, 1.0)
    ref.load_state_dict({k.removeprefix("layers."): v for k, v in net.state_dict().items()})
    x = torch.randn(5, *input_shape) * 2
    for train_mode in (True, False):
        net.train(train_mode)
        ref.train(train_mode)
        torch.manual_seed(2)
        got = net(x)
        torch.manual_seed(2)
        assert_close(got, ref(x))


@pytest.mark.parametrize("case", list(ALL_CASES))
def test_summary_shapes_match_the_real_forward(case: str) -> None:
    layers, input_shape, _ = ALL_CASES[case]
    net, summary = build_model(model_spec(*layers), input_shape)
    net.eval()
    x = torch.randn(3, *input_shape)
    assert summary.input_shape == input_shape
    for layer_summary, module in zip(summary.layers, net.layers, strict=True):
        x = module(x)
        assert layer_summary.output_shape == tuple(x.shape[1:]), layer_summary
    assert summary.output_shape == tuple(x.shape[1:])
    assert summarize(model_spec(*layers), input_shape).as_dict() == summary.as_dict()


def test_dropout_is_active_in_training_and_off_in_eval() -> None:
    net, _ = build_model(model_spec({"type": "dropout", "p": 0.5}), (1000,))
    x = torch.ones(4, 1000)
    net.train()
    zeroed = (net(x) == 0).float().mean().item()
    assert 0.4 < zeroed < 0.6
    net.eval()
    assert_close(net(x), x)


@pytest.mark.parametrize(
    ("input_shape", "norm"),
    [((6,), nn.BatchNorm1d), ((6, 10), nn.BatchNorm1d), ((6, 4, 5), nn.BatchNorm2d)],
)
def test_batchnorm_picks_the_variant_for_the_input_rank(
    input_shape: tuple[int, ...], norm: type[nn.Module]
) -> None:
    net, summary = build_model(model_spec({"type": "batchnorm"}), input_shape)
    (module,) = net.layers
    assert type(module) is norm
    assert module.num_features == 6
    assert summary.output_shape == input_shape
    # Normalised per channel over the batch (and length/space): mean 0, variance 1.
    x = torch.randn(16, *input_shape) * 3 + 2
    out = net.train()(x)
    dims = [0, *range(2, len(input_shape) + 1)]
    assert_close(out.mean(dim=dims), torch.zeros(6), atol=1e-5, rtol=0)
    assert_close(out.var(dim=dims, unbiased=False), torch.ones(6), atol=1e-3, rtol=0)


# --- initialisation -------------------------------------------------------------------------

FAN_IN, FAN_OUT = 512, 384  # unequal, so that fan-in and fan-out formulas cannot be confused
TANH_GAIN = 5 / 3


def _weight_and_bias(*layers: dict, init: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    torch.manual_seed(0)
    net, _ = build_model(model_spec(*layers, init=init), (FAN_IN,))
    first = net.layers[0]
    return first.weight.detach(), first.bias.detach() if first.bias is not None else None


def _wide(activation: str | None, *between: dict) -> list[dict]:
    layers = [{"type": "linear", "out_features": FAN_OUT}, *between]
    if activation:
        layers.append({"type": activation})
    return layers


# (scheme, activation after the layer, expected std, uniform bound or None)
INIT_THEORY = [
    ("normal", "relu", 0.01, None),
    ("he_normal", "relu", math.sqrt(2 / FAN_IN), None),
    ("he_normal", "tanh", TANH_GAIN / math.sqrt(FAN_IN), None),
    ("he_normal", None, 1 / math.sqrt(FAN_IN), None),
    ("he_uniform", "relu", math.sqrt(2 / FAN_IN), math.sqrt(6 / FAN_IN)),
    ("xavier_normal", "tanh", TANH_GAIN * math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    ("xavier_normal", "relu", math.sqrt(2) * math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    ("xavier_uniform", "tanh", TANH_GAIN * math.sqrt(2 / (FAN_IN + FAN_OUT)),
     TANH_GAIN * math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ("xavier_uniform", "sigmoid", math.sqrt(2 / (FAN_IN + FAN_OUT)),
     math.sqrt(6 / (FAN_IN + FAN_OUT))),
]


@pytest.mark.parametrize(("scheme", "activation", "std", "bound"), INIT_THEORY)
def test_init_weight_statistics_match_theory(
    scheme: str, activation: str | None, std: float, bound: float | None
) -> None:
    weight, bias = _weight_and_bias(*_wide(activation), init=scheme)
    assert weight.shape == (FAN_OUT, FAN_IN)
    assert abs(weight.mean().item()) < 0.05 * std
    assert weight.std().item() == pytest.approx(std, rel=0.05)
    if bound is not None:
        assert weight.abs().max().item() <= bound
        assert weight.abs().max().item() > 0.99 * bound  # uniform: the bound is reached
    assert bias is not None
    assert torch.count_nonzero(bias) == 0


def test_zeros_init_zeroes_weights_and_biases() -> None:
    weight, bias = _weight_and_bias(*_wide("relu"), init="zeros")
    assert torch.count_nonzero(weight) == 0
    assert torch.count_nonzero(bias) == 0


def test_torch_default_keeps_pytorch_init_including_the_bias() -> None:
    weight, bias = _weight_and_bias(*_wide("relu"), init="torch_default")
    torch.manual_seed(0)
    ref = nn.Linear(FAN_IN, FAN_OUT)
    assert_close(weight, ref.weight.detach(), rtol=0, atol=0)
    assert_close(bias, ref.bias.detach(), rtol=0, atol=0)
    assert torch.count_nonzero(bias) == FAN_OUT
    assert bias.abs().max().item() <= 1 / math.sqrt(FAN_IN)


def test_he_normal_on_conv_uses_channels_times_kernel_as_fan_in() -> None:
    torch.manual_seed(0)
    net, _ = build_model(
        model_spec({"type": "conv2d", "out_channels": 128, "kernel_size": 3}, {"type": "relu"},
                   init="he_normal"),
        (64, 8, 8),
    )
    conv = net.layers[0]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0


def test_per_layer_init_overrides_the_model_scheme() -> None:
    layers = [
        {"type": "linear", "out_features": FAN_OUT, "init": "zeros"},
        {"type": "relu"},
        {"type": "linear", "out_features": FAN_OUT, "init": "normal"},
        {"type": "relu"},
        {"type": "linear", "out_features": FAN_OUT},
    ]
    torch.manual_seed(0)
    net, _ = build_model(model_spec(*layers, init="he_normal"), (FAN_IN,))
    assert torch.count_nonzero(net.layers[0].weight) == 0
    assert net.layers[2].weight.std().item() == pytest.approx(0.01, rel=0.05)
    # The model's scheme still applies where there is no override (no activation: gain 1).
    assert net.layers[4].weight.std().item() == pytest.approx(1 / math.sqrt(FAN_OUT), rel=0.05)
    # A layer asking for torch_default keeps PyTorch's bias although the model says he_normal.
    torch.manual_seed(0)
    net, _ = build_model(
        model_spec({"type": "linear", "out_features": 8, "init": "torch_default"},
                   init="he_normal"), (FAN_IN,))
    assert torch.count_nonzero(net.layers[0].bias) == 8


def test_gain_follows_the_activation_across_dropout_and_batchnorm() -> None:
    between = [{"type": "dropout", "p": 0.1}, {"type": "batchnorm"}]
    weight, _ = _weight_and_bias(*_wide("tanh", *between), init="xavier_normal")
    expected = TANH_GAIN * math.sqrt(2 / (FAN_IN + FAN_OUT))
    assert weight.std().item() == pytest.approx(expected, rel=0.05)


def test_gain_stops_at_the_next_weighted_layer() -> None:
    # linear -> linear -> relu: the relu belongs to the second layer; the first is linear.
    layers = [{"type": "linear", "out_features": FAN_OUT}, {"type": "linear",
                                                            "out_features": FAN_OUT},
              {"type": "relu"}]
    torch.manual_seed(0)
    net, _ = build_model(model_spec(*layers, init="he_normal"), (FAN_IN,))
    assert net.layers[0].weight.std().item() == pytest.approx(1 / math.sqrt(FAN_IN), rel=0.05)
    assert net.layers[1].weight.std().item() == pytest.approx(math.sqrt(2 / FAN_OUT), rel=0.05)


# --- shape errors ---------------------------------------------------------------------------

SHAPE_ERRORS = [
    pytest.param(
        [{"type": "conv2d", "out_channels": 4}, {"type": "linear", "out_features": 10}],
        (1, 8, 8), "model.layers[1] (linear)", ["(4, 6, 6)", "flatten"],
        id="linear-after-conv-without-flatten",
    ),
    pytest.param(
        [{"type": "conv2d", "out_channels": 4}], (2,), "model.layers[0] (conv2d)",
        ["3-D", "1-D (2,)", "linear", "reshape"], id="conv2d-on-1d",
    ),
    pytest.param(
        [{"type": "conv1d", "out_channels": 4}], (5,), "model.layers[0] (conv1d)",
        ["2-D", "reshape", "[1, 5]"], id="conv1d-on-1d",
    ),
    pytest.param(
        [{"type": "linear", "out_features": 4}, {"type": "reshape", "shape": [3, -1]}], (2,),
        "model.layers[1] (reshape)", ["cannot reshape", "(4,)", "4 values", "[3, -1]"],
        id="reshape-wrong-count",
    ),
    pytest.param(
        [{"type": "maxpool2d", "kernel_size": 2}] * 4, (1, 8, 8), "model.layers[3] (maxpool2d)",
        ["(1, 1, 1)", "kernel_size", "pooling"], id="too-much-pooling",
    ),
    pytest.param(
        [{"type": "conv2d", "out_channels": 4, "kernel_size": 9}], (1, 8, 8),
        "model.layers[0] (conv2d)", ["smaller than the kernel", "padding"],
        id="kernel-larger-than-input",
    ),
    pytest.param(
        [{"type": "conv2d", "out_channels": 4, "padding": "same", "stride": 2}], (1, 8, 8),
        "model.layers[0] (conv2d)", ["same", "stride 1"], id="same-padding-with-stride",
    ),
    pytest.param(
        [{"type": "batchnorm"}], (1, 2, 3, 4), "model.layers[0] (batchnorm)", ["4-D"],
        id="batchnorm-on-4d",
    ),
]


@pytest.mark.parametrize(("layers", "input_shape", "field", "words"),
                         [*SHAPE_ERRORS, *CATALOGUE_SHAPE_ERRORS])
def test_shape_errors_name_the_layer_and_the_fix(
    layers: list[dict], input_shape: tuple[int, ...], field: str, words: list[str]
) -> None:
    with pytest.raises(SpecError) as caught:
        summarize(model_spec(*layers), input_shape)
    # The path and the layer's type travel apart (the API's `field` is the path alone) and
    # the message shows both.
    path, kind = field.split(" ", 1)
    assert (caught.value.field, f"({caught.value.kind})") == (path, kind)
    for word in words:
        assert word in caught.value.message
    assert str(caught.value).startswith(field)
    # build_model fails the same way before building anything real.
    with pytest.raises(SpecError) as again:
        build_model(model_spec(*layers), input_shape)
    assert (again.value.field, again.value.message) == (path, caught.value.message)


def test_summary_path_prefix_is_configurable() -> None:
    with pytest.raises(SpecError) as caught:
        summarize(model_spec({"type": "conv2d", "out_channels": 2}), (3,), path="net")
    assert (caught.value.field, caught.value.kind) == ("net[0]", "conv2d")
    assert str(caught.value).startswith("net[0] (conv2d): ")
