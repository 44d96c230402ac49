"""The optimizer and loss catalogue, each piece against a direct PyTorch reference.

Every optimizer is built from a spec and run for a few steps next to the same torch.optim class
built by hand on a copy of the network; the weights must be equal, not close. Losses are
compared with torch.nn.functional, the weight-decay groups are read off param_groups, and
every impossible combination must name its field. Pure: no database, no broker.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from core.errors import pydantic_details
from core.jobspec import JobSpec, validate_job
from core.settings import Settings
from models.build import SpecError, build_model
from models.losses import build_loss
from tests.test_train_loop import CPU, ListSink
from worker.data import prepare_data
from worker.optim import build_optimizer
from worker.train import train


def job(**sections: Any) -> dict:
    """A valid spirals job with some top-level sections replaced."""
    return {
        "dataset": {"name": "spirals", "n_samples": 200},
        "model": {"layers": [{"type": "linear", "out_features": 3}]},
        **sections,
    }


def toy_network() -> nn.Module:
    """Every kind of parameter the weight-decay groups tell apart."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(),
        nn.Linear(8, 8, bias=False), nn.LayerNorm(8), nn.Linear(8, 3),
    )


def run_steps(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 5) -> None:
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4, generator=gen), torch.randint(0, 3, (32,), generator=gen)
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def assert_same_parameters(ours: nn.Module, ref: nn.Module) -> None:
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# --- optimizers against torch.optim ---------------------------------------------------------

OPTIMIZER_CASES = [
    ({"type": "sgd"}, torch.optim.SGD, {"lr": 0.01}),
    ({"type": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.01},
     torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.01}),
    ({"type": "sgd", "lr": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 0.001},
     torch.optim.SGD, {"lr": 0.1, "momentum": 0.8, "nesterov": True, "weight_decay": 0.001}),
    ({"type": "adam", "lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.01},
     torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01}),
    ({"type": "adamw"}, torch.optim.AdamW, {"lr": 0.001, "weight_decay": 0.01}),
    ({"type": "adamw", "lr": 0.01, "betas": [0.85, 0.98], "eps": 1e-7, "weight_decay": 0.1},
     torch.optim.AdamW, {"lr": 0.01, "betas": (0.85, 0.98), "eps": 1e-7, "weight_decay": 0.1}),
    ({"type": "nadam", "lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.01},
     torch.optim.NAdam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01}),
    ({"type": "radam", "lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.01},
     torch.optim.RAdam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01}),
    ({"type": "adagrad", "lr": 0.05, "lr_decay": 0.01, "weight_decay": 0.01,
      "initial_accumulator_value": 0.1, "eps": 1e-9},
     torch.optim.Adagrad, {"lr": 0.05, "lr_decay": 0.01, "weight_decay": 0.01,
                           "initial_accumulator_value": 0.1, "eps": 1e-9}),
    ({"type": "adadelta"}, torch.optim.Adadelta, {"lr": 1.0}),
    ({"type": "adadelta", "lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.01},
     torch.optim.Adadelta, {"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.01}),
    ({"type": "rmsprop", "lr": 0.005, "alpha": 0.9, "eps": 1e-7, "weight_decay": 0.01,
      "momentum": 0.5, "centered": True},
     torch.optim.RMSprop, {"lr": 0.005, "alpha": 0.9, "eps": 1e-7, "weight_decay": 0.01,
                           "momentum": 0.5, "centered": True}),
]


@pytest.mark.parametrize(("optimizer", "cls", "kwargs"), OPTIMIZER_CASES,
                         ids=[f"{c[0]['type']}-{i}" for i, c in enumerate(OPTIMIZER_CASES)])
def test_optimizer_matches_torch(optimizer: dict, cls: type, kwargs: dict) -> None:
    ours = toy_network()
    ref = copy.deepcopy(ours)
    built = build_optimizer(JobSpec.model_validate(job(optimizer=optimizer)), ours)
    assert type(built) is cls
    run_steps(ours, built)
    run_steps(ref, cls(ref.parameters(), **kwargs))
    assert_same_parameters(ours, ref)
    assert not torch.equal(ours[0].weight, toy_network()[0].weight)  # it did train


def test_every_optimizer_in_the_union_is_covered() -> None:
    covered = {case[0]["type"] for case in OPTIMIZER_CASES}
    union = JobSpec.model_fields["optimizer"].annotation.__args__
    assert covered == {member.model_fields["type"].annotation.__args__[0] for member in union}


# --- exclude_from_weight_decay ---------------------------------------------------------------


def _group_ids(optimizer: torch.optim.Optimizer) -> list[tuple[list[int], float]]:
    return [([id(p) for p in g["params"]], g["weight_decay"]) for g in optimizer.param_groups]


@pytest.mark.parametrize(("excluded", "spared_names"), [
    (["bias"], {"0.bias", "1.bias", "4.bias", "5.bias"}),
    (["norm"], {"1.weight", "1.bias", "4.weight", "4.bias"}),
    (["bias", "norm"], {"0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "5.bias"}),
])
def test_exclude_from_weight_decay_groups(excluded: list[str], spared_names: set[str]) -> None:
    model = toy_network()
    optimizer = build_optimizer(JobSpec.model_validate(job(optimizer={
        "type": "adamw", "weight_decay": 0.05, "exclude_from_weight_decay": excluded,
    })), model)
    named = list(model.named_parameters())
    decayed = [id(p) for n, p in named if n not in spared_names]
    spared = [id(p) for n, p in named if n in spared_names]
    assert _group_ids(optimizer) == [(decayed, 0.05), (spared, 0.0)]


def test_exclude_from_weight_decay_trains_like_torch_param_groups() -> None:
    ours = toy_network()
    ref = copy.deepcopy(ours)
    built = build_optimizer(JobSpec.model_validate(job(optimizer={
        "type": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.1,
        "exclude_from_weight_decay": ["bias", "norm"],
    })), ours)
    run_steps(ours, built)
    norm = (nn.BatchNorm1d, nn.LayerNorm)
    spared = {id(p) for m in ref.modules() if isinstance(m, norm) for p in m.parameters()}
    spared |= {id(p) for n, p in ref.named_parameters() if n.endswith("bias")}
    groups = [
        {"params": [p for p in ref.parameters() if id(p) not in spared]},
        {"params": [p for p in ref.parameters() if id(p) in spared], "weight_decay": 0.0},
    ]
    run_steps(ref, torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=0.1))
    assert_same_parameters(ours, ref)


def test_grouped_optimizer_state_survives_a_rebuild() -> None:
    # A checkpoint rebuilds the optimizer from the spec and loads its state_dict: the groups
    # must come out the same, and training on must match training straight through.
    spec = JobSpec.model_validate(job(optimizer={
        "type": "rmsprop", "momentum": 0.5, "weight_decay": 0.1,
        "exclude_from_weight_decay": ["norm"],
    }))
    straight = toy_network()
    optimizer = build_optimizer(spec, straight)
    run_steps(straight, optimizer, steps=3)
    resumed = copy.deepcopy(straight)
    saved = copy.deepcopy(optimizer.state_dict())
    run_steps(straight, optimizer, steps=2)
    rebuilt = build_optimizer(spec, resumed)
    rebuilt.load_state_dict(saved)
    run_steps(resumed, rebuilt, steps=2)
    assert_same_parameters(resumed, straight)


def test_without_exclusions_there_is_one_group() -> None:
    model = toy_network()
    optimizer = build_optimizer(JobSpec.model_validate(job(optimizer={"type": "adamw"})), model)
    assert _group_ids(optimizer) == [([id(p) for p in model.parameters()], 0.01)]


def test_an_empty_group_is_left_out() -> None:
    model = nn.Linear(3, 2, bias=False)
    optimizer = build_optimizer(JobSpec.model_validate(job(optimizer={
        "type": "sgd", "weight_decay": 0.1, "exclude_from_weight_decay": ["bias"],
    })), model)
    assert _group_ids(optimizer) == [([id(model.weight)], 0.1)]


# --- losses against torch.nn.functional ------------------------------------------------------


def _logits_and_labels() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return torch.randn(16, 5, generator=gen), torch.randint(0, 5, (16,), generator=gen)


def _predictions_and_targets() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return torch.randn(16, 1, generator=gen) * 3, torch.randn(16, 1, generator=gen)


@pytest.mark.parametrize(("loss", "reference", "data"), [
    ({"type": "cross_entropy"}, F.cross_entropy, _logits_and_labels),
    ({"type": "cross_entropy", "label_smoothing": 0.1},
     lambda o, t: F.cross_entropy(o, t, label_smoothing=0.1), _logits_and_labels),
    ({"type": "mse"}, F.mse_loss, _predictions_and_targets),
    ({"type": "l1"}, F.l1_loss, _predictions_and_targets),
    ({"type": "huber"}, F.huber_loss, _predictions_and_targets),
    ({"type": "huber", "delta": 0.5},
     lambda o, t: F.huber_loss(o, t, delta=0.5), _predictions_and_targets),
], ids=["ce", "ce-smoothing", "mse", "l1", "huber", "huber-delta"])
def test_loss_matches_torch_functional(loss: dict, reference: Any, data: Any) -> None:
    out, target = data()
    out.requires_grad_(True)
    ours = build_loss(JobSpec.model_validate(job(loss=loss)).loss)(out, target)
    (grad_ours,) = torch.autograd.grad(ours, out)
    ref = reference(out, target)
    (grad_ref,) = torch.autograd.grad(ref, out)
    assert torch.equal(ours, ref)
    assert torch.equal(grad_ours, grad_ref)


def test_huber_delta_changes_the_loss() -> None:
    out, target = _predictions_and_targets()
    small = build_loss(JobSpec.model_validate(job(loss={"type": "huber", "delta": 0.1})).loss)
    default = build_loss(JobSpec.model_validate(job(loss={"type": "huber"})).loss)
    assert small(out, target) < default(out, target)


# --- impossible combinations name their field ------------------------------------------------


@pytest.mark.parametrize(("changes", "field", "says"), [
    ({"optimizer": {"type": "sgd", "nesterov": True}},
     "optimizer.nesterov", "nesterov needs momentum > 0"),
    ({"optimizer": {"type": "sgd", "momentum": 0.9, "dampening": 0.1, "nesterov": True}},
     "optimizer.nesterov", "nesterov needs dampening 0"),
    ({"optimizer": {"type": "sgd", "dampening": -0.1}},
     "optimizer.dampening", "greater than or equal to 0"),
    ({"optimizer": {"type": "adam", "betas": [0.9, 1.0]}}, "optimizer.betas[1]", "less than 1"),
    ({"optimizer": {"type": "adamw", "betas": [1.0, 0.999]}},
     "optimizer.betas[0]", "less than 1"),
    ({"optimizer": {"type": "nadam", "betas": [0.9, -0.1]}},
     "optimizer.betas[1]", "greater than or equal to 0"),
    ({"optimizer": {"type": "radam", "eps": 0}}, "optimizer.eps", "greater than 0"),
    ({"optimizer": {"type": "adagrad", "lr_decay": -0.01}},
     "optimizer.lr_decay", "greater than or equal to 0"),
    ({"optimizer": {"type": "adagrad", "initial_accumulator_value": -1}},
     "optimizer.initial_accumulator_value", "greater than or equal to 0"),
    ({"optimizer": {"type": "adadelta", "rho": 1.0}}, "optimizer.rho", "less than 1"),
    ({"optimizer": {"type": "rmsprop", "alpha": 1.0}}, "optimizer.alpha", "less than 1"),
    ({"optimizer": {"type": "rmsprop", "momentum": -0.5}},
     "optimizer.momentum", "greater than or equal to 0"),
    ({"optimizer": {"type": "adamw", "weight_decay": -0.01}},
     "optimizer.weight_decay", "greater than or equal to 0"),
    ({"optimizer": {"type": "adamw", "exclude_from_weight_decay": ["embedding"]}},
     "optimizer.exclude_from_weight_decay[0]", "'bias' or 'norm'"),
    ({"optimizer": {"type": "adamw", "exclude_from_weight_decay": "bias"}},
     "optimizer.exclude_from_weight_decay", "valid list"),
    ({"optimizer": {"type": "lamb"}}, "optimizer", "unknown type 'lamb'"),
    ({"loss": {"type": "cross_entropy", "label_smoothing": 1.0}},
     "loss.label_smoothing", "less than 1"),
    ({"loss": {"type": "cross_entropy", "label_smoothing": -0.1}},
     "loss.label_smoothing", "greater than or equal to 0"),
    ({"loss": {"type": "huber", "delta": 0}}, "loss.delta", "greater than 0"),
    ({"loss": {"type": "l1", "delta": 1.0}}, "loss.delta", "unknown field"),
    ({"loss": {"type": "mse", "label_smoothing": 0.1}}, "loss.label_smoothing", "unknown field"),
])
def test_field_errors_name_the_field(changes: dict, field: str, says: str) -> None:
    document = job(**changes)
    with pytest.raises(ValidationError) as info:
        JobSpec.model_validate(document)
    details = pydantic_details(info.value.errors(), document)
    assert [d["field"] for d in details] == [field], details
    assert says in details[0]["message"], details


SINE_OUT_1 = {"layers": [{"type": "linear", "out_features": 1}]}
DIGITS_MLP = {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10}]}


@pytest.mark.parametrize(("document", "field", "says"), [
    ({"dataset": {"name": "digits"}, "model": DIGITS_MLP, "loss": {"type": "l1"}},
     "loss.type", "l1 needs a regression dataset; digits is classification: use cross_entropy"),
    ({"dataset": {"name": "digits"}, "model": DIGITS_MLP, "loss": {"type": "huber"}},
     "loss.type", "huber needs a regression dataset"),
    ({"dataset": {"name": "sine"}, "model": SINE_OUT_1, "loss": {"type": "cross_entropy"}},
     "loss.type", "sine is regression: use mse, l1 or huber"),
    ({"dataset": {"name": "sine"}, "loss": {"type": "huber"},
      "model": {"layers": [{"type": "linear", "out_features": 2}]}},
     "model.layers[0] (linear)", "targets are (1,); end with a linear layer with out_features 1"),
    ({"dataset": {"name": "sine"}, "loss": {"type": "l1"},
      "model": {"layers": [{"type": "linear", "out_features": 3}]}},
     "model.layers[0] (linear)", "end with a linear layer with out_features 1"),
], ids=["l1-digits", "huber-digits", "ce-sine", "huber-shape", "l1-shape"])
def test_loss_task_and_shape_errors_name_the_field(document: dict, field: str, says: str) -> None:
    with pytest.raises(SpecError) as info:
        validate_job(JobSpec.model_validate(document), Settings())
    # The path and the layer's type travel apart; the message shows both.
    kind = f" ({info.value.kind})" if info.value.kind else ""
    assert info.value.field + kind == field
    assert str(info.value).startswith(f"{field}: ")
    assert says in str(info.value)


@pytest.mark.parametrize("loss", [{"type": "mse"}, {"type": "l1"}, {"type": "huber"}])
def test_regression_losses_accept_sine(loss: dict) -> None:
    spec = JobSpec.model_validate({"dataset": {"name": "sine"}, "model": SINE_OUT_1,
                                   "loss": loss})
    assert validate_job(spec, Settings()).model.output_shape == (1,)


# --- wired into the loop ---------------------------------------------------------------------


def test_adamw_and_huber_train_through_the_loop() -> None:
    spec = JobSpec.model_validate({
        "dataset": {"name": "sine", "n_samples": 400, "val_fraction": 0.1},
        "model": {"layers": [
            {"type": "linear", "out_features": 32}, {"type": "tanh"},
            {"type": "linear", "out_features": 1},
        ]},
        "loss": {"type": "huber", "delta": 0.5},
        "optimizer": {"type": "adamw", "lr": 0.01, "weight_decay": 0.05,
                      "exclude_from_weight_decay": ["bias"]},
        "training": {"epochs": 3, "batch_size": 32, "seed": 0},
    })
    validate_job(spec, Settings())
    torch.manual_seed(spec.training.seed)
    data = prepare_data(spec, CPU)
    model, _ = build_model(spec.model, data.input_shape)
    initial = copy.deepcopy(model)
    optimizer = build_optimizer(spec, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    sink = ListSink()
    final = train(spec, model, optimizer, build_loss(spec.loss), data, [sink])

    with torch.no_grad():
        start_loss = F.huber_loss(initial(data.x_train), data.y_train, delta=0.5).item()
        test_out = model(data.x_test)
        test_loss = F.huber_loss(test_out, data.y_test, delta=0.5).item()
        test_rmse = math.sqrt(F.mse_loss(test_out, data.y_test).item())
    assert len(sink.epochs) == 3
    assert sink.epochs[-1]["train_loss"] < start_loss
    assert final["test_loss"] == pytest.approx(test_loss, rel=1e-5)
    assert final["test_rmse"] == pytest.approx(test_rmse, rel=1e-5)  # not √huber
    assert final["test_rmse"] != pytest.approx(math.sqrt(test_loss), rel=1e-3)
