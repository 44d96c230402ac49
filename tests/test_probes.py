"""Per-layer gradient and weight metrics (worker/probes.py) against a hand computation with
torch on the same model: gradient norms from the .grad tensors, weight norms, and the update
ratio from copies of the weights taken around optimizer.step()."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.testing import assert_close

from models import spec as s
from models.build import build_model
from tests.test_train_loop import run_job, spirals_job
from worker.probes import LayerProbe
from worker.train import steps_per_epoch

# Every kind of parametrised layer, a residual block with a projection and one nested inside
# it. Input: 5 features, or 1×6×6 images for the conv net.
FEATURE_LAYERS = [
    {"type": "linear", "out_features": 8},
    {"type": "prelu"},
    {"type": "batchnorm"},
    {"type": "residual", "layers": [
        {"type": "maxout", "out_features": 6, "pieces": 3},
        {"type": "layernorm"},
        {"type": "residual", "layers": [{"type": "linear", "out_features": 6},
                                        {"type": "tanh"}]},
    ]},
    {"type": "relu"},
    {"type": "linear", "out_features": 3},
]
FEATURE_NAMES = ["layers.0", "layers.1", "layers.2", "layers.3.layers.0", "layers.3.layers.1",
                 "layers.3.layers.2.layers.0", "layers.3.shortcut", "layers.5"]
CONV_LAYERS = [
    {"type": "conv2d", "out_channels": 4, "padding": 1},
    {"type": "batchnorm"},
    {"type": "prelu", "num_parameters": "channel"},
    {"type": "residual", "layers": [{"type": "conv2d", "out_channels": 5, "stride": 2,
                                     "padding": 1}]},
    {"type": "global_avg_pool"},
    {"type": "linear", "out_features": 3},
]
CONV_NAMES = ["layers.0", "layers.1", "layers.2", "layers.3.layers.0", "layers.3.shortcut",
              "layers.5"]
CASES = {"features": (FEATURE_LAYERS, (5,), FEATURE_NAMES),
         "conv": (CONV_LAYERS, (1, 6, 6), CONV_NAMES)}


def _built(layers: list[dict], input_shape: tuple[int, ...], seed: int = 0):
    torch.manual_seed(seed)
    return build_model(s.ModelSpec.model_validate({"layers": layers}), input_shape)


def _norm(tensors: list[torch.Tensor]) -> float:
    return torch.linalg.vector_norm(torch.cat([t.flatten() for t in tensors])).item()


def _probed_step(model: nn.Module, input_shape: tuple[int, ...], optimizer: torch.optim.Optimizer
                 ) -> tuple[dict[str, float], dict[str, float]]:
    """One training step with the probe around it, and the same statistics by hand."""
    x = torch.randn(16, *input_shape)
    y = torch.randint(0, 3, (16,))
    probe = LayerProbe(model)
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    probe.after_backward()
    modules = {name: m for name, m in model.named_modules()
               if list(m.parameters(recurse=False))}
    trainable = {name for name, m in modules.items()
                 if any(p.requires_grad for p in m.parameters(recurse=False))}
    want: dict[str, float] = {}
    before = {name: [p.detach().clone() for p in m.parameters(recurse=False)]
              for name, m in modules.items()}
    for name in trainable:
        want[f"grad_norm/{name}"] = _norm([p.grad for p in modules[name].parameters(recurse=False)
                                           if p.grad is not None])
    optimizer.step()
    got = probe.after_step()
    for name, m in modules.items():
        after = [p.detach() for p in m.parameters(recurse=False)]
        want[f"weight_norm/{name}"] = _norm(after)
        if name in trainable:
            moved = [a - b for a, b in zip(after, before[name], strict=True)]
            want[f"update_ratio/{name}"] = _norm(moved) / _norm(before[name])
    return got, want


@pytest.mark.parametrize("case", sorted(CASES))
def test_metrics_equal_a_hand_computation(case: str) -> None:
    layers, input_shape, names = CASES[case]
    model, summary = _built(layers, input_shape)
    # Weight decay moves every parameter, biases and norm scales included.
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)
    got, want = _probed_step(model, input_shape, optimizer)

    assert list(got) == ([f"grad_norm/{n}" for n in names] + [f"weight_norm/{n}" for n in names]
                         + [f"update_ratio/{n}" for n in names])
    # The names are the summary's, for the rows that hold parameters, in the same order.
    assert [row.name for row in summary.layers if row.params] == names
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert value > 0, key  # else the comparison below would prove little
        assert math.isclose(got[key], value, rel_tol=1e-5), (key, got[key], value)


def test_frozen_layers_report_their_weight_norm_only() -> None:
    layers, input_shape, names = CASES["features"]
    model, _ = _built(layers, input_shape)
    frozen = {"layers.0", "layers.3.shortcut"}
    for name, module in model.named_modules():
        if name in frozen:
            module.requires_grad_(False)
    model.layers[5].bias.requires_grad_(False)  # partly frozen: still a trained layer
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    got, want = _probed_step(model, input_shape, optimizer)

    trained = [n for n in names if n not in frozen]
    assert list(got) == ([f"grad_norm/{n}" for n in trained]
                         + [f"weight_norm/{n}" for n in names]
                         + [f"update_ratio/{n}" for n in trained])
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert math.isclose(got[key], value, rel_tol=1e-5), (key, got[key], value)


def test_weights_that_start_at_zero_give_a_finite_ratio() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    nn.init.zeros_(model[0].weight)
    nn.init.zeros_(model[0].bias)
    nn.init.zeros_(model[1].weight)
    nn.init.zeros_(model[1].bias)
    probe = LayerProbe(model)
    F.cross_entropy(model(torch.randn(4, 3)), torch.tensor([0, 0, 0, 1])).backward()
    probe.after_backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    got = probe.after_step()
    # Layer 0 receives no gradient through zero weights and stays at zero; layer 1's bias moves.
    assert got["update_ratio/0"] == 0.0
    assert got["update_ratio/1"] == 1.0
    assert all(math.isfinite(v) for v in got.values())


def test_non_finite_values_are_left_out() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    probe = LayerProbe(model)
    model(torch.randn(4, 3)).sum().backward()
    model[0].weight.grad[0, 0] = math.inf  # what an overflowed fp16 step leaves behind
    probe.after_backward()
    got = probe.after_step()  # no step: nothing moved
    assert "grad_norm/0" not in got
    assert got["grad_norm/1"] > 0
    assert got["update_ratio/0"] == got["update_ratio/1"] == 0.0


def test_after_step_without_after_backward_is_an_error() -> None:
    probe = LayerProbe(nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="after_backward"):
        probe.after_step()


# Tensor methods that read a value on the host: on a GPU each one waits for the device.
HOST_READS = {torch.Tensor.tolist, torch.Tensor.item, torch.Tensor.cpu, torch.Tensor.numpy,
              torch.Tensor.to, torch.Tensor.__bool__, torch.Tensor.__float__,
              torch.Tensor.__int__, torch.Tensor.__index__}


class HostReads(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS:
            self.calls.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_the_statistics_reach_the_host_in_one_transfer() -> None:
    layers, input_shape, _ = CASES["features"]
    model, _ = _built(layers, input_shape)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = LayerProbe(model)
    for _ in range(2):  # the second epoch as the first
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(torch.randn(8, *input_shape)), torch.randint(0, 3, (8,))).backward()
        with HostReads() as reads:
            probe.after_backward()
        assert reads.calls == []
        optimizer.step()
        with HostReads() as reads:
            got = probe.after_step()
        assert reads.calls == ["tolist"]
        assert len(got) == 3 * len(FEATURE_NAMES)


def test_the_loop_reports_every_layer_once_per_epoch_after_its_last_step() -> None:
    run = run_job(spirals_job(epochs=3))
    names = ["layers.0", "layers.3"]  # linear, relu, dropout, linear
    expected = [f"{kind}/{n}" for kind in ("grad_norm", "weight_norm", "update_ratio")
                for n in names]
    per_epoch = steps_per_epoch(len(run.data.x_train), run.spec.training.batch_size)
    for kind in expected:
        points = [p for p in run.sink.points if p.name == kind]
        assert [(p.epoch, p.step) for p in points] == [(e, e * per_epoch) for e in (1, 2, 3)]
    # Then the activation statistics (worker/activation_probe.py): the relu's, and the two
    # linear layers' share of near-zero weights.
    activations = ["act_mean/layers.1", "act_std/layers.1", "dead_share/layers.1",
                   "zero_weight_share/layers.0", "zero_weight_share/layers.3"]
    for epoch in run.sink.epochs:
        assert [k for k in epoch if "/" in k] == expected + activations
    # The last epoch's weight norms are those of the trained model.
    last = run.sink.epochs[-1]
    for name in names:
        module = run.model.get_submodule(name)
        assert_close(last[f"weight_norm/{name}"], _norm(list(module.parameters())))
