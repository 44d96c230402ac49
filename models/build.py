"""Spec -> nn.Module, with shape inference and a per-layer summary.

Shapes are inferred by running each layer on torch's `meta` device, which allocates
nothing; the same pass serves validation in the API (no real module is built there).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from models.init import init_weights
from models.layers import ACTIVATION_GAIN_NAMES, REGISTRY, Shape, activation_slope
from models.spec import ModelSpec


class SpecError(ValueError):
    """A spec that cannot be built. `field` is the path of the offending entry."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class LayerSummary:
    name: str
    type: str
    output_shape: Shape
    params: int


@dataclass
class ModelSummary:
    input_shape: Shape
    output_shape: Shape
    layers: list[LayerSummary] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    def as_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "layers": [
                {"name": x.name, "type": x.type, "output_shape": list(x.output_shape),
                 "params": x.params}
                for x in self.layers
            ],
            "total_params": self.total_params,
        }


class Network(nn.Module):
    """The built network. Parameter names read `layers.<i>.weight`, as in the summary."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _infer_layer(layer, shape: Shape, where: str) -> tuple[nn.Module, Shape]:
    entry = REGISTRY[layer.type]
    if entry.ranks is not None and len(shape) not in entry.ranks:
        raise SpecError(where, entry.rank_hint(shape) if entry.rank_hint else "wrong input rank")
    problem = entry.check(layer, shape) if entry.check else None
    if problem:
        raise SpecError(where, problem)
    try:
        with torch.device("meta"):
            module = entry.build(layer, shape)
            out = module.eval()(torch.empty((2, *shape)))
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


def _following_nonlinearity(spec: ModelSpec, index: int) -> tuple[str, float | None]:
    """The activation that follows layer `index` before the next weighted layer, as a
    calculate_gain name and its slope parameter (leaky_relu and prelu only)."""
    for layer in spec.layers[index + 1:]:
        if layer.type in ACTIVATION_GAIN_NAMES:
            return ACTIVATION_GAIN_NAMES[layer.type], activation_slope(layer)
        if REGISTRY[layer.type].has_weights:
            break
    return "linear", None


def summarize(spec: ModelSpec, input_shape: Shape, path: str = "model.layers") -> ModelSummary:
    """Infer every layer's output shape and parameter count; raises SpecError."""
    summary, _ = _walk(spec, input_shape, path)
    return summary


def _walk(spec: ModelSpec, input_shape: Shape, path: str) -> tuple[ModelSummary, list[Shape]]:
    shape = tuple(input_shape)
    summary = ModelSummary(input_shape=shape, output_shape=shape)
    in_shapes: list[Shape] = []
    for i, layer in enumerate(spec.layers):
        where = f"{path}[{i}] ({layer.type})"
        module, out_shape = _infer_layer(layer, shape, where)
        params = sum(p.numel() for p in module.parameters())
        summary.layers.append(LayerSummary(layer.name or f"layers.{i}", layer.type, out_shape,
                                           params))
        in_shapes.append(shape)
        shape = out_shape
    summary.output_shape = shape
    return summary, in_shapes


def build_model(spec: ModelSpec, input_shape: Shape) -> tuple[Network, ModelSummary]:
    """Build the real network on the CPU, initialised as the spec says.

    Seed torch's RNG before calling for a reproducible initialisation; move the result to the
    training device afterwards.
    """
    summary, in_shapes = _walk(spec, input_shape, "model.layers")
    modules: list[nn.Module] = []
    for i, (layer, shape) in enumerate(zip(spec.layers, in_shapes, strict=True)):
        entry = REGISTRY[layer.type]
        module = entry.build(layer, shape)
        if entry.has_weights:
            scheme = getattr(layer, "init", None) or spec.init
            init_weights(module, scheme, *_following_nonlinearity(spec, i))
        modules.append(module)
    return Network(modules), summary
