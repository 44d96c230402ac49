"""Spec -> nn.Module, with shape inference and a per-layer summary.

Shapes are inferred by running each layer on torch's `meta` device, which allocates
nothing; the same pass serves validation in the API (no real module is built there).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.flops import layer_flops, residual_sum_flops
from models.init import bias_scheme, init_bias, init_weights
from models.init_spec import BiasInitSpec, InitSpec
from models.layers import (
    ACTIVATION_GAIN_NAMES,
    REGISTRY,
    Residual,
    Shape,
    activation_slope,
    build_shortcut,
    shortcut_problem,
)
from models.spec import ModelSpec


@dataclass(frozen=True)
class Where:
    """A spec entry as an error names it: its path (`model.layers[3]`) and, for a layer or an
    augmentation, its type (`linear`), shown beside the path but never part of it."""

    path: str
    kind: str | None = None

    def __str__(self) -> str:
        return f"{self.path} ({self.kind})" if self.kind else self.path


class SpecError(ValueError):
    """A spec that cannot be built. `field` is the path of the offending entry, `kind` the
    type of the layer or augmentation there (None elsewhere); the message shows both."""

    def __init__(self, where: str | Where, message: str) -> None:
        where = where if isinstance(where, Where) else Where(where)
        super().__init__(f"{where}: {message}")
        self.field = where.path
        self.kind = where.kind
        self.message = message


@dataclass(frozen=True)
class LayerSummary:
    """One row. `params` counts the layer's parameters, trained or frozen; the trainable ones
    are `trainable_params`; `non_trainable_params` are its frozen parameters plus its running
    statistics (batchnorm's running mean and variance, buffers that Keras counts the same way).
    `flops` is per example (models/flops.py says what is counted)."""

    name: str
    type: str
    output_shape: Shape
    params: int
    trainable_params: int = 0
    non_trainable_params: int = 0
    flops: int = 0


@dataclass
class ModelSummary:
    input_shape: Shape
    output_shape: Shape
    layers: list[LayerSummary] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def trainable_params(self) -> int:
        return sum(layer.trainable_params for layer in self.layers)

    @property
    def non_trainable_params(self) -> int:
        return sum(layer.non_trainable_params for layer in self.layers)

    @property
    def total_flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    def as_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "layers": [
                {"name": x.name, "type": x.type, "output_shape": list(x.output_shape),
                 "params": x.params, "trainable_params": x.trainable_params,
                 "non_trainable_params": x.non_trainable_params, "flops": x.flops}
                for x in self.layers
            ],
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "total_flops": self.total_flops,
        }


class Network(nn.Module):
    """The built network. Parameter names read `layers.<i>.weight`, as in the summary; inside
    a residual block `layers.<i>.layers.<j>.weight` and `layers.<i>.shortcut.weight`."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@dataclass(frozen=True)
class _Measured:
    """What a layer's shape pass tells the summary: its output shape and its counts."""

    out_shape: Shape
    params: int
    statistics: int  # floating-point buffers (running statistics)
    flops: int | None


# Layers measured on the meta device, by their settings and input shape. Validating a spec
# is mostly this pass (torch's Python decompositions on meta tensors): 64% of the API's CPU
# time under a stream of submissions. A sweep submits the same layers again and again.
_MEASURED: OrderedDict[tuple[str, Shape], _Measured] = OrderedDict()
_MEASURED_MAX = 4096
_MEASURED_LOCK = threading.Lock()


def _measure_layer(layer, shape: Shape, where: Where, device: str) -> _Measured:
    """_infer_layer's shape and counts; on the meta device, remembered for the next spec with
    the same layer (its name and frozen flag aside) on the same input shape."""
    _check_layer(layer, shape, where)  # cheap, and its message names this spec's field
    if device != "meta":
        return _measured(*_infer_layer(layer, shape, where, device), shape)
    key = (layer.model_dump_json(exclude={"name", "frozen"}), shape)
    with _MEASURED_LOCK:
        found = _MEASURED.get(key)
        if found is not None:
            _MEASURED.move_to_end(key)
            return found
    measured = _measured(*_infer_layer(layer, shape, where, device), shape)
    with _MEASURED_LOCK:
        _MEASURED[key] = measured
        while len(_MEASURED) > _MEASURED_MAX:
            _MEASURED.popitem(last=False)
    return measured


def _measured(module: nn.Module, out_shape: Shape, in_shape: Shape) -> _Measured:
    return _Measured(
        out_shape,
        params=sum(p.numel() for p in module.parameters()),
        # Floating-point buffers are running statistics; num_batches_tracked is a step counter.
        statistics=sum(b.numel() for b in module.buffers() if b.is_floating_point()),
        flops=layer_flops(module, in_shape, out_shape),
    )


def _check_layer(layer, shape: Shape, where: Where) -> None:
    entry = REGISTRY[layer.type]
    if entry.ranks is not None and len(shape) not in entry.ranks:
        raise SpecError(where, entry.rank_hint(shape) if entry.rank_hint else "wrong input rank")
    problem = entry.check(layer, shape) if entry.check else None
    if problem:
        raise SpecError(where, problem)


def _infer_layer(layer, shape: Shape, where: Where, device: str) -> tuple[nn.Module, Shape]:
    """The layer built for input `shape` and its output shape (checked by _check_layer)."""
    entry = REGISTRY[layer.type]
    try:
        # On the CPU, the layer draws its initial weights: from a copy of the RNG's state, so
        # that the network built afterwards gets the same weights as after a meta-device pass.
        with torch.device(device), torch.random.fork_rng(devices=[], enabled=device != "meta"):
            module = entry.build(layer, shape)
            out = module.eval()(torch.zeros((2, *shape)))
    except (ValueError, RuntimeError) as exc:
        raise SpecError(where, _explain_torch_error(layer, shape, exc)) from None
    out_shape = tuple(out.shape[1:])
    if any(d <= 0 for d in out_shape) or not out_shape:
        raise SpecError(
            where,
            f"output would be empty for input {shape}; lower kernel_size or stride, add "
            "padding, or remove a pooling layer",
        )
    return module, out_shape


def _explain_torch_error(layer, shape: Shape, exc: Exception) -> str:
    layer_type = layer.type
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "padding='same'" in text:
        return "padding 'same' needs stride 1; give a number for padding instead"
    if layer_type in ("conv1d", "conv2d"):
        return (
            f"input {shape} is smaller than the kernel; lower kernel_size or dilation, add "
            f"padding, or remove a pooling layer before it ({text})"
        )
    if layer_type in ("maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d"):
        return (
            f"input {shape} is smaller than the pooling window; lower kernel_size or remove "
            f"a pooling layer before it ({text})"
        )
    if layer_type == "reshape":
        return (
            f"cannot reshape input {shape} ({_numel(shape)} values per sample) to "
            f"{list(layer.shape)}; the shape must hold {_numel(shape)} values"
        )
    return f"cannot be applied to input {shape}: {text}"


def _numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _following_nonlinearity(layers: list, index: int) -> tuple[str, float | None]:
    """The activation that follows layers[index] before the next weighted layer or residual
    block, as a calculate_gain name and its slope parameter (leaky_relu and prelu only).
    The search stays within `layers`: inside a residual block, it ends with the block, whose
    output is a sum rather than the input of the activation after it."""
    for layer in layers[index + 1:]:
        if layer.type in ACTIVATION_GAIN_NAMES:
            return ACTIVATION_GAIN_NAMES[layer.type], activation_slope(layer)
        entry = REGISTRY[layer.type]
        if entry.has_weights or entry.build is None:
            break
    return "linear", None


def summarize(spec: ModelSpec, input_shape: Shape, path: str = "model.layers") -> ModelSummary:
    """Infer every layer's output shape and parameter count; raises SpecError."""
    summary, _ = _walk(spec, input_shape, path)
    return summary


@dataclass(frozen=True)
class _Planned:
    """A layer and the shape it receives; for a residual block, its own layers' plans too."""

    layer: Any
    in_shape: Shape
    out_shape: Shape
    inner: tuple[_Planned, ...] = ()


def _walk(spec: ModelSpec, input_shape: Shape, path: str, device: str = "meta"
          ) -> tuple[ModelSummary, list[_Planned]]:
    shape = tuple(input_shape)
    summary = ModelSummary(input_shape=shape, output_shape=shape)
    plans, summary.output_shape = _walk_layers(spec.layers, shape, path, "layers.", summary.layers,
                                               device)
    if summary.trainable_params == 0 and summary.total_params > 0:
        raise SpecError(
            path,
            "every layer with parameters is frozen, so there is nothing to train; set frozen "
            "to false on at least one layer",
        )
    return summary, plans


def _walk_layers(
    layers: list, shape: Shape, path: str, prefix: str, rows: list[LayerSummary], device: str
) -> tuple[list[_Planned], Shape]:
    """Infer shapes layer by layer, appending summary rows; a residual block's rows are its
    layers' (named `<prefix><i>.layers.<j>`), its projection's (`<prefix><i>.shortcut`), then
    the block's own, which holds the sum's shape and no parameters of its own."""
    plans: list[_Planned] = []
    for i, layer in enumerate(layers):
        where = Where(f"{path}[{i}]", layer.type)
        name = f"{prefix}{i}"
        inner: list[_Planned] = []
        if REGISTRY[layer.type].build is None:
            inner, out_shape = _walk_layers(
                layer.layers, shape, f"{path}[{i}].layers", f"{name}.layers.", rows, device
            )
            problem = shortcut_problem(shape, out_shape)
            if problem:
                raise SpecError(where, problem)
            with torch.device("meta"):
                shortcut = build_shortcut(shape, out_shape)
            if shortcut is not None:
                rows.append(_row(f"{name}.shortcut", _shortcut_type(shortcut), shortcut, shape,
                                 out_shape, frozen=False))
            rows.append(LayerSummary(layer.name or name, layer.type, out_shape, 0,
                                     flops=residual_sum_flops(out_shape)))
        else:
            measured = _measure_layer(layer, shape, where, device)
            out_shape = measured.out_shape
            rows.append(_layer_row(layer.name or name, layer.type, measured,
                                   frozen=getattr(layer, "frozen", False)))
        plans.append(_Planned(layer, shape, out_shape, tuple(inner)))
        shape = out_shape
    return plans, shape


def _shortcut_type(module: nn.Module) -> str:
    return {nn.Linear: "linear", nn.Conv1d: "conv1d", nn.Conv2d: "conv2d"}[type(module)]


def _row(name: str, layer_type: str, module: nn.Module, in_shape: Shape, out_shape: Shape,
         frozen: bool) -> LayerSummary:
    """A summary row from the meta-device module: counts read shapes, nothing is allocated."""
    return _layer_row(name, layer_type, _measured(module, out_shape, in_shape), frozen)


def _layer_row(name: str, layer_type: str, measured: _Measured, frozen: bool) -> LayerSummary:
    params = measured.params
    return LayerSummary(
        name, layer_type, measured.out_shape, params,
        trainable_params=0 if frozen else params,
        non_trainable_params=measured.statistics + (params if frozen else 0),
        # None: no rule yet; tests/test_summary_init.py requires one per type
        flops=measured.flops or 0,
    )


def build_model(spec: ModelSpec, input_shape: Shape, shape_device: str = "meta"
                ) -> tuple[Network, ModelSummary]:
    """Build the real network on the CPU, initialised as the spec says.

    Seed torch's RNG before calling for a reproducible initialisation; move the result to the
    training device afterwards. The shapes are inferred layer by layer on `shape_device`:
    "meta" allocates nothing, but a process's first meta-device pass imports about 2 s of
    torch's decompositions; "cpu" runs each layer on two samples of zeros instead, which is
    what the training child wants (it allocates the network anyway).
    """
    summary, plans = _walk(spec, input_shape, "model.layers", shape_device)
    return Network(_build_layers(plans, spec.init, spec.bias_init)), summary


def warm_up_shapes() -> None:
    """Pay a process's first meta-device pass (torch importing its decompositions: 2-6 s on
    2 cores) now, not in the first request or trial that validates a network."""
    _walk(ModelSpec.model_validate({"layers": [{"type": "linear", "out_features": 2}]}), (4,),
          "model.layers", "meta")


def _build_layers(
    plans: list[_Planned], model_init: InitSpec, model_bias: BiasInitSpec | None
) -> list[nn.Module]:
    """The real modules, in spec order; a block's layers are built before its shortcut. A
    frozen layer's parameters get requires_grad False after their initialisation."""
    layers = [plan.layer for plan in plans]
    modules: list[nn.Module] = []
    for i, plan in enumerate(plans):
        entry = REGISTRY[plan.layer.type]
        if entry.build is None:
            inner = _build_layers(list(plan.inner), model_init, model_bias)
            shortcut = build_shortcut(plan.in_shape, plan.out_shape)
            if shortcut is not None:  # its output is added, not activated: the linear gain
                init_weights(shortcut, model_init)
            modules.append(Residual(inner, shortcut))
            continue
        module = entry.build(plan.layer, plan.in_shape)
        if entry.has_weights:
            scheme = plan.layer.init or model_init
            init_weights(module, scheme, *_following_nonlinearity(layers, i))
            init_bias(module, bias_scheme(scheme, plan.layer.bias_init, model_bias))
        if getattr(plan.layer, "frozen", False):
            module.requires_grad_(False)
        modules.append(module)
    return modules
