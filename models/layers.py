"""The layer registry: one entry per layer type.

An entry says which input ranks the layer accepts (and what to tell the user otherwise) and
how to build the torch module from the spec and the per-sample input shape. Adding a layer
is adding a spec class in models/spec.py and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from models import spec as s

Shape = tuple[int, ...]


class Reshape(nn.Module):
    """Reshape every sample; the batch dimension is kept."""

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


@dataclass(frozen=True)
class LayerEntry:
    build: Callable[[Any, Shape], nn.Module]
    ranks: tuple[int, ...] | None = None  # accepted per-sample input ranks; None: any
    rank_hint: Callable[[Shape], str] | None = None  # what to change when the rank is wrong
    has_weights: bool = False  # takes the model's init scheme


def _dims(shape: Shape) -> str:
    return f"{len(shape)}-D {shape}"


def _linear_hint(shape: Shape) -> str:
    return f"input is {_dims(shape)}; add a flatten layer first"


def _conv1d_hint(shape: Shape) -> str:
    if len(shape) == 1:
        return (
            f"needs a 2-D input (channels, length) but the input is {_dims(shape)}; "
            f"add a reshape layer with shape [1, {shape[0]}] first"
        )
    return f"needs a 2-D input (channels, length) but the input is {_dims(shape)}; use conv2d"


def _conv2d_hint(shape: Shape) -> str:
    if len(shape) == 1:
        return (
            f"needs a 3-D input (channels, height, width) but the input is {_dims(shape)}; "
            "use linear layers for feature vectors, or add a reshape layer to make an image"
        )
    if len(shape) == 2:
        return (
            f"needs a 3-D input (channels, height, width) but the input is {_dims(shape)}; "
            "use conv1d for (channels, length) data"
        )
    return f"needs a 3-D input (channels, height, width) but the input is {_dims(shape)}"


def _pool_hint(kind: str, wanted: int) -> Callable[[Shape], str]:
    layout = "(channels, length)" if wanted == 2 else "(channels, height, width)"
    other = "maxpool2d" if wanted == 2 else "maxpool1d"

    def hint(shape: Shape) -> str:
        if len(shape) == 1:
            fix = "pooling needs a spatial input: remove it, or add a reshape layer first"
        else:
            fix = f"use {other} for this input"
        return f"{kind} needs a {wanted}-D input {layout} but the input is {_dims(shape)}; {fix}"

    return hint


def _conv_padding(spec: s._ConvSpec) -> int | str | tuple[int, int]:
    return spec.padding


def _build_conv1d(spec: s.Conv1dSpec, shape: Shape) -> nn.Module:
    return nn.Conv1d(
        shape[0], spec.out_channels, spec.kernel_size, spec.stride, _conv_padding(spec),
        bias=spec.bias,
    )


def _build_conv2d(spec: s.Conv2dSpec, shape: Shape) -> nn.Module:
    return nn.Conv2d(
        shape[0], spec.out_channels, spec.kernel_size, spec.stride, _conv_padding(spec),
        bias=spec.bias,
    )


def _build_batchnorm(spec: s.BatchNormSpec, shape: Shape) -> nn.Module:
    norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
    return norm(shape[0], eps=spec.eps, momentum=spec.momentum)


REGISTRY: dict[str, LayerEntry] = {
    "linear": LayerEntry(
        build=lambda spec, shape: nn.Linear(shape[0], spec.out_features, bias=spec.bias),
        ranks=(1,), rank_hint=_linear_hint, has_weights=True,
    ),
    "conv1d": LayerEntry(
        build=_build_conv1d, ranks=(2,), rank_hint=_conv1d_hint, has_weights=True
    ),
    "conv2d": LayerEntry(
        build=_build_conv2d, ranks=(3,), rank_hint=_conv2d_hint, has_weights=True
    ),
    "maxpool1d": LayerEntry(
        build=lambda spec, shape: nn.MaxPool1d(spec.kernel_size, spec.stride),
        ranks=(2,), rank_hint=_pool_hint("maxpool1d", 2),
    ),
    "maxpool2d": LayerEntry(
        build=lambda spec, shape: nn.MaxPool2d(spec.kernel_size, spec.stride),
        ranks=(3,), rank_hint=_pool_hint("maxpool2d", 3),
    ),
    "flatten": LayerEntry(build=lambda spec, shape: nn.Flatten()),
    "reshape": LayerEntry(build=lambda spec, shape: Reshape(spec.shape)),
    "dropout": LayerEntry(build=lambda spec, shape: nn.Dropout(spec.p)),
    "batchnorm": LayerEntry(
        build=_build_batchnorm, ranks=(1, 2, 3),
        rank_hint=lambda shape: f"batchnorm needs a 1-, 2- or 3-D input, not {_dims(shape)}",
    ),
    "relu": LayerEntry(build=lambda spec, shape: nn.ReLU()),
    "sigmoid": LayerEntry(build=lambda spec, shape: nn.Sigmoid()),
    "tanh": LayerEntry(build=lambda spec, shape: nn.Tanh()),
}

# Activations decide the gain of He/Xavier initialisation for the layer before them.
ACTIVATION_GAIN_NAMES = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}
