"""Residual blocks and maxout against direct PyTorch references.

Pure: no database, no broker. Each network is built from a spec with `build_model`, its
weights are randomised, and the same computation is written out with torch.nn.functional on
the copied tensors; the two must agree. `summarize` must predict the real shapes, names and
parameter counts, and errors inside blocks must name the nested layer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import Tensor
from torch.testing import assert_close

from core.jobspec import JobSpec, validate_job
from core.settings import Settings
from models import spec as s
from models.build import SpecError, build_model, summarize

ROOT = Path(__file__).resolve().parents[1]
StateDict = dict[str, Tensor]


def model_spec(*layers: dict, init: str = "torch_default") -> s.ModelSpec:
    return s.ModelSpec.model_validate({"init": init, "layers": list(layers)})


def _linear(sd: StateDict, name: str, x: Tensor) -> Tensor:
    return F.linear(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"))


def _identity_ref(sd: StateDict, x: Tensor) -> Tensor:
    h = _linear(sd, "layers.0", x)
    body = _linear(sd, "layers.1.layers.2", F.relu(_linear(sd, "layers.1.layers.0", h)))
    return body + h


def _linear_projection_ref(sd: StateDict, x: Tensor) -> Tensor:
    body = F.relu(_linear(sd, "layers.0.layers.0", x))
    return body + F.linear(x, sd["layers.0.shortcut.weight"])


def _conv2d_projection_ref(sd: StateDict, x: Tensor) -> Tensor:
    h = F.relu(F.conv2d(x, sd["layers.0.layers.0.weight"], sd["layers.0.layers.0.bias"],
                        stride=2, padding=1))
    body = F.conv2d(h, sd["layers.0.layers.2.weight"], sd["layers.0.layers.2.bias"],
                    padding="same")
    return body + F.conv2d(x, sd["layers.0.shortcut.weight"], stride=2)


def _conv1d_projection_ref(sd: StateDict, x: Tensor) -> Tensor:
    body = F.conv1d(x, sd["layers.0.layers.0.weight"], sd["layers.0.layers.0.bias"], padding=1)
    return body + F.conv1d(x, sd["layers.0.shortcut.weight"])


def _nested_ref(sd: StateDict, x: Tensor) -> Tensor:
    h = _linear(sd, "layers.0", x)
    a = F.relu(_linear(sd, "layers.1.layers.0", h))
    inner = torch.tanh(_linear(sd, "layers.1.layers.2.layers.0", a)) + a
    block = inner + F.linear(h, sd["layers.1.shortcut.weight"])
    return _linear(sd, "layers.3", F.relu(block))


def _maxout_ref(sd: StateDict, x: Tensor) -> Tensor:
    z = F.linear(x, sd["layers.0.weight"], sd["layers.0.bias"])  # (batch, 5·3)
    return z.reshape(x.shape[0], 5, 3).max(dim=2).values


def _maxout_no_bias_ref(sd: StateDict, x: Tensor) -> Tensor:
    z = F.linear(F.relu(_linear(sd, "layers.0", x)), sd["layers.2.weight"])
    return z.reshape(x.shape[0], 2, 4).max(dim=2).values


def _maxout_conv2d_ref(sd: StateDict, x: Tensor) -> Tensor:
    z = F.conv2d(x, sd["layers.0.weight"], sd["layers.0.bias"], padding=1)  # (batch, 4·3, 6, 6)
    return z.reshape(x.shape[0], 4, 3, 6, 6).max(dim=2).values


def _maxout_conv1d_ref(sd: StateDict, x: Tensor) -> Tensor:
    z = F.conv1d(x, sd["layers.0.weight"], sd["layers.0.bias"], stride=2)  # (batch, 3·2, 4)
    return z.reshape(x.shape[0], 3, 2, 4).max(dim=2).values


# (layers, per-sample input shape, the network written out with torch.nn.functional on the
# built network's state dict); test_models.py counts these towards its per-type coverage.
CASES: dict[str, tuple[list[dict], tuple[int, ...], Callable[[StateDict, Tensor], Tensor]]] = {
    "residual-identity": (
        [{"type": "linear", "out_features": 8},
         {"type": "residual", "layers": [{"type": "linear", "out_features": 8}, {"type": "relu"},
                                         {"type": "linear", "out_features": 8}]}],
        (3,), _identity_ref,
    ),
    "residual-linear-projection": (
        [{"type": "residual", "layers": [{"type": "linear", "out_features": 7},
                                         {"type": "relu"}]}],
        (4,), _linear_projection_ref,
    ),
    "residual-conv2d-projection": (
        [{"type": "residual", "layers": [
            {"type": "conv2d", "out_channels": 6, "stride": 2, "padding": 1}, {"type": "relu"},
            {"type": "conv2d", "out_channels": 6, "padding": "same"}]}],
        (3, 9, 9), _conv2d_projection_ref,
    ),
    "residual-conv1d-projection": (
        [{"type": "residual", "layers": [{"type": "conv1d", "out_channels": 5, "padding": 1}]}],
        (2, 11), _conv1d_projection_ref,
    ),
    "residual-nested": (
        [{"type": "linear", "out_features": 6},
         {"type": "residual", "layers": [
             {"type": "linear", "out_features": 4}, {"type": "relu"},
             {"type": "residual", "layers": [{"type": "linear", "out_features": 4},
                                             {"type": "tanh"}]}]},
         {"type": "relu"},
         {"type": "linear", "out_features": 2}],
        (5,), _nested_ref,
    ),
    "maxout": ([{"type": "maxout", "out_features": 5, "pieces": 3}], (4,), _maxout_ref),
    "maxout-no-bias": (
        [{"type": "linear", "out_features": 6}, {"type": "relu"},
         {"type": "maxout", "out_features": 2, "pieces": 4, "bias": False}],
        (3,), _maxout_no_bias_ref,
    ),
    "maxout-conv2d": (
        [{"type": "maxout_conv2d", "out_channels": 4, "pieces": 3, "padding": 1}], (2, 6, 6),
        _maxout_conv2d_ref,
    ),
    "maxout-conv1d": (
        [{"type": "maxout_conv1d", "out_channels": 3, "kernel_size": 3, "stride": 2}], (2, 9),
        _maxout_conv1d_ref,
    ),
}

# The state-dict names each case must keep: checkpoints depend on them.
STATE_DICT_KEYS = {
    "residual-identity": ["layers.0.weight", "layers.0.bias", "layers.1.layers.0.weight",
                          "layers.1.layers.0.bias", "layers.1.layers.2.weight",
                          "layers.1.layers.2.bias"],
    "residual-linear-projection": ["layers.0.layers.0.weight", "layers.0.layers.0.bias",
                                   "layers.0.shortcut.weight"],
    "residual-conv2d-projection": ["layers.0.layers.0.weight", "layers.0.layers.0.bias",
                                   "layers.0.layers.2.weight", "layers.0.layers.2.bias",
                                   "layers.0.shortcut.weight"],
    "residual-conv1d-projection": ["layers.0.layers.0.weight", "layers.0.layers.0.bias",
                                   "layers.0.shortcut.weight"],
    "residual-nested": ["layers.0.weight", "layers.0.bias", "layers.1.layers.0.weight",
                        "layers.1.layers.0.bias", "layers.1.layers.2.layers.0.weight",
                        "layers.1.layers.2.layers.0.bias", "layers.1.shortcut.weight",
                        "layers.3.weight", "layers.3.bias"],
    "maxout": ["layers.0.weight", "layers.0.bias"],
    "maxout-no-bias": ["layers.0.weight", "layers.0.bias", "layers.2.weight"],
    "maxout-conv2d": ["layers.0.weight", "layers.0.bias"],
    "maxout-conv1d": ["layers.0.weight", "layers.0.bias"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_the_functional_reference(case: str) -> None:
    layers, input_shape, reference = CASES[case]
    torch.manual_seed(0)
    net, summary = build_model(model_spec(*layers), input_shape)
    assert list(net.state_dict()) == STATE_DICT_KEYS[case]
    with torch.no_grad():
        for param in net.parameters():
            param.uniform_(-1.0, 1.0)
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(6, *input_shape)
    assert_close(net(x), reference(sd, x))
    n_params = sum(v.numel() for v in sd.values())
    assert summary.total_params == n_params == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("case", list(CASES))
def test_summary_rows_match_the_real_modules(case: str) -> None:
    layers, input_shape, _ = CASES[case]
    net, summary = build_model(model_spec(*layers), input_shape)
    outputs: dict[str, tuple[int, ...]] = {}
    for row in summary.layers:
        module = net.get_submodule(row.name)  # every row names a real module
        module.register_forward_hook(
            lambda _m, _i, out, name=row.name: outputs.__setitem__(name, tuple(out.shape[1:]))
        )
        own = sum(p.numel() for p in module.parameters())
        # A block's parameters are on its layers' and its shortcut's rows: none counted twice.
        expected = 0 if row.type == "residual" else own
        assert row.params == expected, row
    net.eval()(torch.randn(3, *input_shape))
    for row in summary.layers:
        assert outputs[row.name] == row.output_shape, row
    assert summarize(model_spec(*layers), input_shape).as_dict() == summary.as_dict()


def test_nested_summary_reads_as_documented() -> None:
    layers, input_shape, _ = CASES["residual-nested"]
    rows = [(x.name, x.type, x.output_shape, x.params)
            for x in summarize(model_spec(*layers), input_shape).layers]
    assert rows == [
        ("layers.0", "linear", (6,), 5 * 6 + 6),
        ("layers.1.layers.0", "linear", (4,), 6 * 4 + 4),
        ("layers.1.layers.1", "relu", (4,), 0),
        ("layers.1.layers.2.layers.0", "linear", (4,), 4 * 4 + 4),
        ("layers.1.layers.2.layers.1", "tanh", (4,), 0),
        ("layers.1.layers.2", "residual", (4,), 0),
        ("layers.1.shortcut", "linear", (4,), 6 * 4),
        ("layers.1", "residual", (4,), 0),
        ("layers.2", "relu", (4,), 0),
        ("layers.3", "linear", (2,), 4 * 2 + 2),
    ]


def test_conv_projection_summary_and_custom_names() -> None:
    layers = [{"type": "residual", "name": "down", "layers": [
        {"type": "conv2d", "out_channels": 6, "stride": 2, "padding": 1, "name": "conv"}]}]
    rows = [(x.name, x.type, x.output_shape, x.params)
            for x in summarize(model_spec(*layers), (3, 8, 7)).layers]
    assert rows == [
        ("conv", "conv2d", (6, 4, 4), 3 * 6 * 9 + 6),
        ("layers.0.shortcut", "conv2d", (6, 4, 4), 3 * 6),
        ("down", "residual", (6, 4, 4), 0),
    ]


def test_maxout_counts_pieces_in_its_parameters() -> None:
    summary = summarize(model_spec({"type": "maxout", "out_features": 10, "pieces": 4}), (7,))
    assert summary.total_params == 7 * 10 * 4 + 10 * 4
    assert summary.output_shape == (10,)


# --- initialisation -------------------------------------------------------------------------

FAN_IN, FAN_OUT = 512, 384


def test_init_applies_inside_blocks_with_the_gain_rule_of_the_block() -> None:
    layers = [
        {"type": "linear", "out_features": FAN_IN},  # a block follows: no activation, gain 1
        {"type": "residual", "layers": [
            {"type": "relu"},
            {"type": "linear", "out_features": FAN_OUT},
            {"type": "relu"},
            {"type": "linear", "out_features": FAN_OUT, "init": "zeros"},
            {"type": "linear", "out_features": FAN_OUT},  # last in its block: gain 1
        ]},
        {"type": "relu"},
    ]
    torch.manual_seed(0)
    net, _ = build_model(model_spec(*layers, init="he_normal"), (16,))
    first, block = net.layers[0], net.layers[1]
    assert first.weight.std().item() == pytest.approx(1 / math.sqrt(16), rel=0.05)
    inner = block.layers
    assert inner[1].weight.std().item() == pytest.approx(math.sqrt(2 / FAN_IN), rel=0.05)
    assert torch.count_nonzero(inner[1].bias) == 0
    assert torch.count_nonzero(inner[3].weight) == 0
    assert inner[4].weight.std().item() == pytest.approx(1 / math.sqrt(FAN_OUT), rel=0.05)
    # The projection takes the model's scheme with the linear gain, and has no bias.
    assert block.shortcut.bias is None
    assert block.shortcut.weight.std().item() == pytest.approx(1 / math.sqrt(FAN_IN), rel=0.05)


def test_torch_default_keeps_pytorch_init_in_blocks_built_in_spec_order() -> None:
    layers = [{"type": "residual", "layers": [{"type": "linear", "out_features": 6}]}]
    torch.manual_seed(0)
    net, _ = build_model(model_spec(*layers), (4,))
    torch.manual_seed(0)
    inner, shortcut = torch.nn.Linear(4, 6), torch.nn.Linear(4, 6, bias=False)
    assert_close(net.layers[0].layers[0].weight, inner.weight, rtol=0, atol=0)
    assert_close(net.layers[0].layers[0].bias, inner.bias, rtol=0, atol=0)
    assert_close(net.layers[0].shortcut.weight, shortcut.weight, rtol=0, atol=0)


def test_maxout_takes_the_init_scheme_like_linear() -> None:
    torch.manual_seed(0)
    net, _ = build_model(
        model_spec({"type": "maxout", "out_features": 96, "pieces": 4}, init="he_normal"),
        (FAN_IN,))
    assert net.layers[0].weight.shape == (96 * 4, FAN_IN)
    assert net.layers[0].weight.std().item() == pytest.approx(1 / math.sqrt(FAN_IN), rel=0.05)
    assert torch.count_nonzero(net.layers[0].bias) == 0


# --- errors ---------------------------------------------------------------------------------

SHAPE_ERRORS = [
    pytest.param(
        [{"type": "linear", "out_features": 4},
         {"type": "residual", "layers": [
             {"type": "linear", "out_features": 8},
             {"type": "residual", "layers": [{"type": "relu"}, {"type": "conv2d",
                                                                "out_channels": 4}]}]}],
        (3,), "model.layers[1].layers[1].layers[1] (conv2d)", ["3-D", "1-D (8,)"],
        id="nested-conv-on-features",
    ),
    pytest.param(
        [{"type": "residual", "layers": [{"type": "flatten"},
                                         {"type": "linear", "out_features": 4}]}],
        (1, 4, 4), "model.layers[0] (residual)", ["3-D (1, 4, 4)", "1-D (4,)", "same rank",
                                                  "flatten"],
        id="block-changes-rank",
    ),
    pytest.param(
        [{"type": "residual", "layers": [{"type": "conv2d", "out_channels": 4}]}],
        (1, 8, 8), "model.layers[0] (residual)", ["height from 8 to 6", "1×1", "padding"],
        id="block-shrinks-without-stride",
    ),
    pytest.param(
        [{"type": "conv2d", "out_channels": 2}, {"type": "maxout", "out_features": 3}],
        (1, 5, 5), "model.layers[1] (maxout)", ["1-D", "3-D (2, 3, 3)", "flatten"],
        id="maxout-on-image",
    ),
    pytest.param(
        [{"type": "residual", "layers": [{"type": "maxpool2d", "kernel_size": 2}] * 4}],
        (1, 8, 8), "model.layers[0].layers[3] (maxpool2d)", ["smaller than the pooling window"],
        id="nested-pooling-too-far",
    ),
]


@pytest.mark.parametrize(("layers", "input_shape", "field", "words"), SHAPE_ERRORS)
def test_errors_name_the_nested_layer_and_the_fix(
    layers: list[dict], input_shape: tuple[int, ...], field: str, words: list[str]
) -> None:
    with pytest.raises(SpecError) as caught:
        summarize(model_spec(*layers), input_shape)
    path, kind = field.split(" ", 1)
    assert (caught.value.field, f"({caught.value.kind})") == (path, kind)
    assert str(caught.value).startswith(f"{field}: ")
    for word in words:
        assert word in caught.value.message
    with pytest.raises(SpecError) as again:
        build_model(model_spec(*layers), input_shape)
    assert (again.value.field, again.value.message) == (path, caught.value.message)


def test_invalid_values_name_the_nested_field() -> None:
    with pytest.raises(ValidationError) as caught:
        model_spec({"type": "residual", "layers": [{"type": "maxout", "out_features": 3,
                                                    "pieces": 1}]})
    (error,) = caught.value.errors()
    assert error["loc"] == ("layers", 0, "residual", "layers", 0, "maxout", "pieces")
    with pytest.raises(ValidationError, match="at least 1 item"):
        model_spec({"type": "residual", "layers": []})


def test_layer_count_includes_nested_layers_and_nesting_is_bounded() -> None:
    block = {"type": "residual", "layers": [{"type": "relu"}] * 200}
    with pytest.raises(ValidationError, match="402 layers counting those inside residual"):
        model_spec(block, block)
    deep: dict = {"type": "relu"}
    for _ in range(s.MAX_NESTING + 1):
        deep = {"type": "residual", "layers": [deep]}
    with pytest.raises(ValidationError, match="nest 17 deep"):
        model_spec(deep)


# --- a deep residual MLP trains -------------------------------------------------------------


def test_twenty_block_residual_mlp_builds_and_learns() -> None:
    block = {"type": "residual", "layers": [{"type": "linear", "out_features": 32},
                                            {"type": "relu"}]}
    layers = [{"type": "linear", "out_features": 32}, *[block] * 20,
              {"type": "linear", "out_features": 3}]
    torch.manual_seed(0)
    net, summary = build_model(model_spec(*layers, init="he_normal"), (2,))
    assert len(net.layers) == 22
    assert summary.total_params == (2 * 32 + 32) + 20 * (32 * 32 + 32) + (32 * 3 + 3)
    x = torch.randn(128, 2)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0]
    assert net.layers[0].weight.grad.abs().sum() > 0  # the gradient reaches the first layer


def test_the_residual_example_builds_as_documented() -> None:
    job = json.loads((ROOT / "examples" / "spirals-residual.json").read_text())
    spec = JobSpec.model_validate(job)
    net, summary = build_model(spec.model, (2,))
    assert summary.output_shape == (3,)
    assert [row.name for row in summary.layers if row.type == "residual"] == ["layers.1",
                                                                              "layers.2"]
    assert not any(row.name.endswith("shortcut") for row in summary.layers)  # identity
    assert net(torch.randn(4, 2)).shape == (4, 3)


def test_the_servers_layer_limit_counts_the_layers_inside_blocks() -> None:
    block = {"type": "residual", "layers": [{"type": "linear", "out_features": 8},
                                            {"type": "relu"}] * 3}
    spec = JobSpec.model_validate({
        "dataset": {"name": "spirals"},
        "model": {"layers": [{"type": "linear", "out_features": 8}, block,
                             {"type": "linear", "out_features": 3}]},
    })
    validate_job(spec, Settings(max_layers=9))  # 3 top-level + 6 inside
    with pytest.raises(SpecError) as caught:
        validate_job(spec, Settings(max_layers=8))
    assert caught.value.field == "model.layers"
    assert "9 layers counting those inside residual blocks" in caught.value.message
