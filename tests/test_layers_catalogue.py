"""The wider layer catalogue against hand-built PyTorch: activations, pooling, layernorm,
identity, and conv dilation and groups.

Pure: no database, no broker. As in test_models.py, each network is built from a spec with
`build_model` and by hand in plain torch under the same seed; the two must agree on weights,
parameter counts and outputs, and `summarize` must predict the real shapes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from torch.testing import assert_close

from models import spec as s
from models.build import SpecError, build_model, summarize


def model_spec(*layers: dict, init: str = "torch_default") -> s.ModelSpec:
    return s.ModelSpec.model_validate({"init": init, "layers": list(layers)})


def _after_linear(layer: dict, module: nn.Module) -> tuple[list[dict], tuple[int, ...],
                                                            Callable[[], nn.Sequential]]:
    return ([{"type": "linear", "out_features": 6}, layer], (4,),
            lambda: nn.Sequential(nn.Linear(4, 6), module))


def _global_pool_reference(pool: type[nn.Module]) -> nn.Module:
    return nn.Sequential(pool(1), nn.Flatten())


# (layers, per-sample input shape, the same network by hand); the format of test_models.CASES.
CASES: dict[str, tuple[list[dict], tuple[int, ...], Callable[[], nn.Sequential]]] = {
    "leaky_relu": _after_linear({"type": "leaky_relu", "negative_slope": 0.2},
                                nn.LeakyReLU(0.2)),
    "leaky_relu-default": _after_linear({"type": "leaky_relu"}, nn.LeakyReLU()),
    "prelu-single": _after_linear({"type": "prelu"}, nn.PReLU()),
    "prelu-channel-features": _after_linear({"type": "prelu", "num_parameters": "channel"},
                                            nn.PReLU(6)),
    "prelu-channel-image": (
        [{"type": "conv2d", "out_channels": 4}, {"type": "prelu", "num_parameters": "channel"}],
        (2, 6, 6),
        lambda: nn.Sequential(nn.Conv2d(2, 4, 3), nn.PReLU(4)),
    ),
    "elu": _after_linear({"type": "elu", "alpha": 0.5}, nn.ELU(0.5)),
    "selu": _after_linear({"type": "selu"}, nn.SELU()),
    "gelu": _after_linear({"type": "gelu"}, nn.GELU()),
    "gelu-tanh": _after_linear({"type": "gelu", "approximate": "tanh"},
                               nn.GELU(approximate="tanh")),
    "silu": _after_linear({"type": "silu"}, nn.SiLU()),
    "softplus": _after_linear({"type": "softplus", "beta": 2.0, "threshold": 0.5},
                              nn.Softplus(beta=2.0, threshold=0.5)),
    "softmax": _after_linear({"type": "softmax"}, nn.Softmax(dim=1)),
    "log_softmax": (
        [{"type": "conv1d", "out_channels": 5}, {"type": "log_softmax"}], (3, 9),
        lambda: nn.Sequential(nn.Conv1d(3, 5, 3), nn.LogSoftmax(dim=1)),
    ),
    "avgpool1d": (
        [{"type": "avgpool1d", "kernel_size": 3}], (2, 10),
        lambda: nn.Sequential(nn.AvgPool1d(3, stride=3)),
    ),
    "avgpool2d": (
        [{"type": "avgpool2d", "kernel_size": [2, 3], "stride": 1}], (3, 6, 7),
        lambda: nn.Sequential(nn.AvgPool2d((2, 3), stride=1)),
    ),
    "global_avg_pool-1d": (
        [{"type": "global_avg_pool"}], (3, 10),
        lambda: nn.Sequential(_global_pool_reference(nn.AdaptiveAvgPool1d)),
    ),
    "global_avg_pool-2d": (
        [{"type": "conv2d", "out_channels": 4}, {"type": "global_avg_pool"},
         {"type": "linear", "out_features": 3}],
        (2, 7, 6),
        lambda: nn.Sequential(nn.Conv2d(2, 4, 3), _global_pool_reference(nn.AdaptiveAvgPool2d),
                              nn.Linear(4, 3)),
    ),
    "layernorm-features": _after_linear({"type": "layernorm", "eps": 1e-3},
                                        nn.LayerNorm(6, eps=1e-3)),
    "layernorm-whole-image": (
        [{"type": "layernorm"}], (3, 4, 5),
        lambda: nn.Sequential(nn.LayerNorm((3, 4, 5))),
    ),
    "layernorm-last-dim": (
        [{"type": "layernorm", "dims": 1}], (3, 8),
        lambda: nn.Sequential(nn.LayerNorm(8)),
    ),
    "layernorm-last-two-dims": (
        [{"type": "layernorm", "dims": 2}], (3, 4, 5),
        lambda: nn.Sequential(nn.LayerNorm((4, 5))),
    ),
    "identity": _after_linear({"type": "identity"}, nn.Identity()),
    "conv1d-dilation-groups": (
        [{"type": "conv1d", "out_channels": 6, "kernel_size": 3, "dilation": 2, "groups": 2,
          "padding": 1}],
        (4, 15),
        lambda: nn.Sequential(nn.Conv1d(4, 6, 3, padding=1, dilation=2, groups=2)),
    ),
    "conv2d-dilation-groups-same": (
        [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "dilation": [2, 1],
          "groups": 2, "padding": "same", "bias": False}],
        (6, 9, 8),
        lambda: nn.Sequential(nn.Conv2d(6, 4, 3, padding="same", dilation=(2, 1), groups=2,
                                        bias=False)),
    ),
    "conv2d-depthwise": (
        [{"type": "conv2d", "out_channels": 3, "groups": 3, "stride": 2}], (3, 9, 9),
        lambda: nn.Sequential(nn.Conv2d(3, 3, 3, stride=2, groups=3)),
    ),
}

NEW_TYPES = {
    "leaky_relu", "prelu", "elu", "selu", "gelu", "silu", "softplus", "softmax", "log_softmax",
    "avgpool1d", "avgpool2d", "global_avg_pool", "layernorm", "identity",
}


# The reference and summary checks for these cases run in tests/test_models.py, over every
# layer type's cases.
def test_every_new_type_has_a_reference_case() -> None:
    covered = {layer["type"] for layers, _, _ in CASES.values() for layer in layers}
    assert covered >= NEW_TYPES


def test_global_avg_pool_is_the_mean_over_space() -> None:
    net, summary = build_model(model_spec({"type": "global_avg_pool"}), (3, 4, 5))
    x = torch.randn(2, 3, 4, 5)
    assert summary.output_shape == (3,)
    assert_close(net(x), x.mean(dim=(2, 3)))


def test_layernorm_normalises_each_sample() -> None:
    net, _ = build_model(model_spec({"type": "layernorm"}), (3, 4, 5))
    out = net(torch.randn(6, 3, 4, 5) * 4 + 1).flatten(1)
    assert_close(out.mean(dim=1), torch.zeros(6), atol=1e-5, rtol=0)
    assert_close(out.var(dim=1, unbiased=False), torch.ones(6), atol=1e-3, rtol=0)


@pytest.mark.parametrize("input_shape", [(7,), (4, 9), (4, 5, 6)])
def test_softmax_sums_to_one_and_log_softmax_to_logsumexp_zero(
    input_shape: tuple[int, ...],
) -> None:
    x = torch.randn(8, *input_shape) * 3
    soft, _ = build_model(model_spec({"type": "softmax"}), input_shape)
    log_soft, _ = build_model(model_spec({"type": "log_softmax"}), input_shape)
    ones = torch.ones(8, *input_shape[1:])
    assert_close(soft(x).sum(dim=1), ones)
    assert (soft(x) > 0).all()
    assert_close(log_soft(x).logsumexp(dim=1), torch.zeros_like(ones), atol=1e-5, rtol=0)
    assert_close(log_soft(x), soft(x).log(), atol=1e-5, rtol=0)


# --- initialisation gains -------------------------------------------------------------------

FAN_IN, FAN_OUT = 512, 384


def _first_weight_std(*after: dict, init: str = "he_normal") -> float:
    torch.manual_seed(0)
    layers = [{"type": "linear", "out_features": FAN_OUT}, *after]
    net, _ = build_model(model_spec(*layers, init=init), (FAN_IN,))
    return net.layers[0].weight.std().item()


@pytest.mark.parametrize(
    ("activation", "gain"),
    [
        ({"type": "leaky_relu", "negative_slope": 0.3}, math.sqrt(2 / (1 + 0.3**2))),
        ({"type": "leaky_relu"}, math.sqrt(2 / (1 + 0.01**2))),
        ({"type": "prelu"}, math.sqrt(2 / (1 + 0.25**2))),
        ({"type": "selu"}, 3 / 4),
        # No torch gain: the linear gain, and the search for an activation stops there.
        ({"type": "gelu"}, 1.0),
        ({"type": "silu"}, 1.0),
        ({"type": "softmax"}, 1.0),
    ],
)
def test_he_gain_follows_the_new_activations(activation: dict, gain: float) -> None:
    std = _first_weight_std(activation, {"type": "relu"})
    assert std == pytest.approx(gain / math.sqrt(FAN_IN), rel=0.05)


def test_xavier_takes_the_leaky_relu_slope() -> None:
    std = _first_weight_std({"type": "leaky_relu", "negative_slope": 0.5}, init="xavier_normal")
    gain = torch.nn.init.calculate_gain("leaky_relu", 0.5)
    assert std == pytest.approx(gain * math.sqrt(2 / (FAN_IN + FAN_OUT)), rel=0.05)


def test_gain_looks_through_identity_and_layernorm() -> None:
    std = _first_weight_std({"type": "identity"}, {"type": "layernorm"}, {"type": "selu"})
    assert std == pytest.approx(0.75 / math.sqrt(FAN_IN), rel=0.05)


# --- errors ---------------------------------------------------------------------------------

SHAPE_ERRORS = [
    pytest.param(
        [{"type": "avgpool1d"}], (2, 8, 8), "model.layers[0] (avgpool1d)",
        ["2-D", "3-D (2, 8, 8)", "use avgpool2d"], id="avgpool1d-on-image",
    ),
    pytest.param(
        [{"type": "avgpool2d"}], (2, 8), "model.layers[0] (avgpool2d)",
        ["3-D", "2-D (2, 8)", "use avgpool1d"], id="avgpool2d-on-sequence",
    ),
    pytest.param(
        [{"type": "avgpool2d"}], (8,), "model.layers[0] (avgpool2d)",
        ["1-D (8,)", "reshape"], id="avgpool2d-on-features",
    ),
    pytest.param(
        [{"type": "avgpool2d", "kernel_size": 9}], (1, 8, 8), "model.layers[0] (avgpool2d)",
        ["smaller than the pooling window", "kernel_size"], id="avgpool-window-too-large",
    ),
    pytest.param(
        [{"type": "linear", "out_features": 4}, {"type": "global_avg_pool"}], (3,),
        "model.layers[1] (global_avg_pool)", ["1-D (4,)", "2-D", "3-D", "remove it"],
        id="global-pool-on-features",
    ),
    pytest.param(
        [{"type": "layernorm", "dims": 3}], (4, 5), "model.layers[0] (layernorm)",
        ["dims 3", "2-D (4, 5)", "at most 2"], id="layernorm-more-dims-than-input",
    ),
    pytest.param(
        [{"type": "conv2d", "out_channels": 4}, {"type": "relu"},
         {"type": "conv2d", "out_channels": 6, "groups": 3}], (1, 8, 8),
        "model.layers[2] (conv2d)", ["groups 3 must divide the input channels (4)"],
        id="groups-not-dividing-input-channels",
    ),
    pytest.param(
        [{"type": "conv1d", "out_channels": 5, "groups": 2}], (4, 8),
        "model.layers[0] (conv1d)", ["groups 2 must divide out_channels (5)"],
        id="groups-not-dividing-out-channels",
    ),
    pytest.param(
        [{"type": "conv2d", "out_channels": 4, "dilation": 4}], (1, 8, 8),
        "model.layers[0] (conv2d)", ["smaller than the kernel", "dilation"],
        id="dilated-kernel-larger-than-input",
    ),
]


def test_groups_error_reads_as_documented() -> None:
    layers = [{"type": "conv2d", "out_channels": 16}, {"type": "relu"},
              {"type": "conv2d", "out_channels": 12, "groups": 3}]
    with pytest.raises(SpecError) as caught:
        summarize(model_spec(*layers), (1, 8, 8))
    assert str(caught.value) == (
        "model.layers[2] (conv2d): groups 3 must divide the input channels (16); "
        "use a divisor of 16 for groups"
    )


BAD_VALUES = [
    ({"type": "leaky_relu", "negative_slope": -0.1}, "negative_slope", "greater than or equal"),
    ({"type": "elu", "alpha": 0}, "alpha", "greater than 0"),
    ({"type": "softplus", "beta": 0}, "beta", "greater than 0"),
    ({"type": "softplus", "threshold": -1}, "threshold", "greater than 0"),
    ({"type": "gelu", "approximate": "fast"}, "approximate", "'none' or 'tanh'"),
    ({"type": "prelu", "num_parameters": 3}, "num_parameters", "'single' or 'channel'"),
    ({"type": "layernorm", "dims": 0}, "dims", "greater than or equal to 1"),
    ({"type": "layernorm", "eps": 0}, "eps", "greater than 0"),
    ({"type": "avgpool2d", "kernel_size": 0}, "kernel_size", "greater than 0"),
    ({"type": "conv2d", "out_channels": 4, "groups": 0}, "groups", "greater than or equal"),
    ({"type": "conv1d", "out_channels": 4, "dilation": 0}, "dilation", "greater than 0"),
    ({"type": "conv1d", "out_channels": 4, "dilation": [2, 2]}, "dilation", "integer"),
    ({"type": "selu", "alpha": 1.0}, "alpha", "Extra inputs"),
]


@pytest.mark.parametrize(("layer", "field", "phrase"), BAD_VALUES)
def test_invalid_values_are_rejected_naming_the_field(layer: dict, field: str,
                                                      phrase: str) -> None:
    with pytest.raises(ValidationError) as caught:
        model_spec(layer)
    errors = caught.value.errors()
    assert any(field in error["loc"] and phrase in error["msg"] for error in errors), errors


def test_unknown_layer_type_lists_the_new_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        model_spec({"type": "swish"})
    (error,) = caught.value.errors()
    assert error["type"] == "union_tag_invalid"
    for name in ("'gelu'", "'global_avg_pool'", "'log_softmax'", "'identity'"):
        assert name in error["ctx"]["expected_tags"]
