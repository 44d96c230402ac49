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


class GlobalAvgPool(nn.Module):
    """Average over every spatial dimension: (C, L) or (C, H, W) -> (C,)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2).mean(dim=2)


class Maxout(nn.Linear):
    """A linear layer to out_features·pieces values and the max over each unit's pieces
    (Goodfellow et al., 2013). Unit i takes rows i·pieces to i·pieces + pieces − 1 of the
    weight; being an nn.Linear, it keeps the names `weight` and `bias` and takes init schemes
    as linear does."""

    def __init__(self, in_features: int, out_features: int, pieces: int, bias: bool = True):
        super().__init__(in_features, out_features * pieces, bias=bias)
        self.pieces = pieces

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).unflatten(-1, (-1, self.pieces)).amax(dim=-1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pieces={self.pieces}"


class MaxoutConv1d(nn.Conv1d):
    """A conv1d to out_channels·pieces channels and the max over each output channel's
    pieces: channel i takes channels i·pieces to i·pieces + pieces − 1, as Maxout's units do."""

    def __init__(self, in_channels: int, out_channels: int, pieces: int, **conv: Any):
        super().__init__(in_channels, out_channels * pieces, **conv)
        self.pieces = pieces

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).unflatten(1, (-1, self.pieces)).amax(dim=2)


class MaxoutConv2d(nn.Conv2d):
    """The 2-D form of MaxoutConv1d."""

    def __init__(self, in_channels: int, out_channels: int, pieces: int, **conv: Any):
        super().__init__(in_channels, out_channels * pieces, **conv)
        self.pieces = pieces

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).unflatten(1, (-1, self.pieces)).amax(dim=2)


MAXOUT_CONVS = (MaxoutConv1d, MaxoutConv2d)


class Residual(nn.Module):
    """`layers(x) + shortcut(x)`; the shortcut is the identity unless a projection is given.
    Parameters read `layers.<j>.weight` and `shortcut.weight`."""

    def __init__(self, layers: list[nn.Module], shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x) + self.shortcut(x)


@dataclass(frozen=True)
class LayerEntry:
    # None for a block of nested layers (residual): models/build.py walks and builds those.
    build: Callable[[Any, Shape], nn.Module] | None
    ranks: tuple[int, ...] | None = None  # accepted per-sample input ranks; None: any
    rank_hint: Callable[[Shape], str] | None = None  # what to change when the rank is wrong
    has_weights: bool = False  # takes the model's init scheme
    # What to change when the spec's values do not fit the input shape; None when they do.
    check: Callable[[Any, Shape], str | None] | None = None


def _dims(shape: Shape) -> str:
    return f"{len(shape)}-D {shape}"


def _linear_hint(shape: Shape) -> str:
    return f"input is {_dims(shape)}; add a flatten layer first"


def _maxout_hint(shape: Shape) -> str:
    return (f"maxout needs 1-D features but the input is {_dims(shape)}; add a flatten layer "
            "first, or use maxout_conv1d / maxout_conv2d")


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
    family = kind.removesuffix("1d").removesuffix("2d")
    other = f"{family}2d" if wanted == 2 else f"{family}1d"

    def hint(shape: Shape) -> str:
        if len(shape) == 1:
            fix = "pooling needs a spatial input: remove it, or add a reshape layer first"
        else:
            fix = f"use {other} for this input"
        return f"{kind} needs a {wanted}-D input {layout} but the input is {_dims(shape)}; {fix}"

    return hint


def _global_pool_hint(shape: Shape) -> str:
    return (
        "global_avg_pool needs a 2-D (channels, length) or 3-D (channels, height, width) "
        f"input but the input is {_dims(shape)}; remove it, or add a reshape layer first"
    )


def _check_groups(spec: s._ConvSpec, shape: Shape) -> str | None:
    if shape[0] % spec.groups:
        return (
            f"groups {spec.groups} must divide the input channels ({shape[0]}); "
            f"use a divisor of {shape[0]} for groups"
        )
    if spec.out_channels % spec.groups:
        return (
            f"groups {spec.groups} must divide out_channels ({spec.out_channels}); "
            "change out_channels or groups"
        )
    return None


def _build_conv(conv: type[nn.Conv1d] | type[nn.Conv2d]) -> Callable[[Any, Shape], nn.Module]:
    def build(spec: s._ConvSpec, shape: Shape) -> nn.Module:
        return conv(
            shape[0], spec.out_channels, spec.kernel_size, spec.stride, spec.padding,
            dilation=spec.dilation, groups=spec.groups, bias=spec.bias,
        )

    return build


def _build_maxout_conv(conv: type[nn.Conv1d] | type[nn.Conv2d]
                       ) -> Callable[[Any, Shape], nn.Module]:
    def build(spec: s._ConvSpec, shape: Shape) -> nn.Module:
        return conv(
            shape[0], spec.out_channels, spec.pieces, kernel_size=spec.kernel_size,
            stride=spec.stride, padding=spec.padding, dilation=spec.dilation,
            groups=spec.groups, bias=spec.bias,
        )

    return build


def _layernorm_dims(spec: s.LayerNormSpec, shape: Shape) -> str | None:
    if spec.dims is not None and spec.dims > len(shape):
        return (
            f"dims {spec.dims} is more than the input has: {_dims(shape)}; "
            f"use at most {len(shape)}, or null for all of them"
        )
    return None


def _build_layernorm(spec: s.LayerNormSpec, shape: Shape) -> nn.Module:
    dims = len(shape) if spec.dims is None else spec.dims
    return nn.LayerNorm(shape[len(shape) - dims:], eps=spec.eps)


def _build_prelu(spec: s.PReluSpec, shape: Shape) -> nn.Module:
    return nn.PReLU(shape[0] if spec.num_parameters == "channel" else 1)


def _build_batchnorm(spec: s.BatchNormSpec, shape: Shape) -> nn.Module:
    norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
    return norm(shape[0], eps=spec.eps, momentum=spec.momentum)


def _pool_entry(kind: str, pool: type[nn.Module], rank: int) -> LayerEntry:
    """Max and average pooling, 1-D ((channels, length) input) or 2-D (images)."""
    return LayerEntry(
        build=lambda spec, shape: pool(spec.kernel_size, spec.stride),
        ranks=(rank,), rank_hint=_pool_hint(kind, rank),
    )


REGISTRY: dict[str, LayerEntry] = {
    "linear": LayerEntry(
        build=lambda spec, shape: nn.Linear(shape[0], spec.out_features, bias=spec.bias),
        ranks=(1,), rank_hint=_linear_hint, has_weights=True,
    ),
    "conv1d": LayerEntry(
        build=_build_conv(nn.Conv1d), ranks=(2,), rank_hint=_conv1d_hint, has_weights=True,
        check=_check_groups,
    ),
    "conv2d": LayerEntry(
        build=_build_conv(nn.Conv2d), ranks=(3,), rank_hint=_conv2d_hint, has_weights=True,
        check=_check_groups,
    ),
    "maxpool1d": _pool_entry("maxpool1d", nn.MaxPool1d, 2),
    "maxpool2d": _pool_entry("maxpool2d", nn.MaxPool2d, 3),
    "avgpool1d": _pool_entry("avgpool1d", nn.AvgPool1d, 2),
    "avgpool2d": _pool_entry("avgpool2d", nn.AvgPool2d, 3),
    "global_avg_pool": LayerEntry(
        build=lambda spec, shape: GlobalAvgPool(), ranks=(2, 3), rank_hint=_global_pool_hint,
    ),
    "flatten": LayerEntry(build=lambda spec, shape: nn.Flatten()),
    "reshape": LayerEntry(build=lambda spec, shape: Reshape(spec.shape)),
    "dropout": LayerEntry(build=lambda spec, shape: nn.Dropout(spec.p)),
    "batchnorm": LayerEntry(
        build=_build_batchnorm, ranks=(1, 2, 3),
        rank_hint=lambda shape: f"batchnorm needs a 1-, 2- or 3-D input, not {_dims(shape)}",
    ),
    "layernorm": LayerEntry(build=_build_layernorm, check=_layernorm_dims),
    "identity": LayerEntry(build=lambda spec, shape: nn.Identity()),
    "relu": LayerEntry(build=lambda spec, shape: nn.ReLU()),
    "sigmoid": LayerEntry(build=lambda spec, shape: nn.Sigmoid()),
    "tanh": LayerEntry(build=lambda spec, shape: nn.Tanh()),
    "leaky_relu": LayerEntry(build=lambda spec, shape: nn.LeakyReLU(spec.negative_slope)),
    "prelu": LayerEntry(build=_build_prelu),
    "elu": LayerEntry(build=lambda spec, shape: nn.ELU(spec.alpha)),
    "selu": LayerEntry(build=lambda spec, shape: nn.SELU()),
    "gelu": LayerEntry(build=lambda spec, shape: nn.GELU(approximate=spec.approximate)),
    "silu": LayerEntry(build=lambda spec, shape: nn.SiLU()),
    "softplus": LayerEntry(
        build=lambda spec, shape: nn.Softplus(beta=spec.beta, threshold=spec.threshold)
    ),
    "softmax": LayerEntry(build=lambda spec, shape: nn.Softmax(dim=1)),
    "log_softmax": LayerEntry(build=lambda spec, shape: nn.LogSoftmax(dim=1)),
    "maxout": LayerEntry(
        build=lambda spec, shape: Maxout(shape[0], spec.out_features, spec.pieces, spec.bias),
        ranks=(1,), rank_hint=_maxout_hint, has_weights=True,
    ),
    "maxout_conv1d": LayerEntry(
        build=_build_maxout_conv(MaxoutConv1d), ranks=(2,), rank_hint=_conv1d_hint,
        has_weights=True, check=_check_groups,
    ),
    "maxout_conv2d": LayerEntry(
        build=_build_maxout_conv(MaxoutConv2d), ranks=(3,), rank_hint=_conv2d_hint,
        has_weights=True, check=_check_groups,
    ),
    "residual": LayerEntry(build=None),
}


def _projection_stride(size_in: int, size_out: int) -> int | None:
    """The stride of a 1×1 convolution that takes `size_in` positions to `size_out`."""
    for stride in range(1, size_in + 1):
        if (size_in - 1) // stride + 1 == size_out:
            return stride
    return None


def shortcut_problem(in_shape: Shape, out_shape: Shape) -> str | None:
    """What to change when no shortcut can take a block's input shape to its output shape."""
    if in_shape == out_shape:
        return None
    if len(in_shape) != len(out_shape):
        return (
            f"its layers turn {_dims(in_shape)} into {_dims(out_shape)}, and a shortcut can "
            "only add inputs and outputs of the same rank; move the flatten, reshape or "
            "pooling that changes the rank out of the block"
        )
    if len(in_shape) == 1:
        return None
    axes = ("length",) if len(in_shape) == 2 else ("height", "width")
    for axis, size_in, size_out in zip(axes, in_shape[1:], out_shape[1:], strict=True):
        if _projection_stride(size_in, size_out) is None:
            return (
                f"its layers change the {axis} from {size_in} to {size_out}, which no 1×1 "
                "convolution's stride matches for the shortcut; pad the block's convolutions "
                "(padding 'same', or 1 for kernel_size 3) so that they keep the size or divide "
                "it by a stride"
            )
    return None


def build_shortcut(in_shape: Shape, out_shape: Shape) -> nn.Module | None:
    """The projection a residual block adds to its output: None (the identity) when the shapes
    agree, else a linear layer without bias for features, or a 1×1 convolution without bias,
    strided to match the block's spatial reduction. Check shortcut_problem first."""
    if in_shape == out_shape:
        return None
    if len(in_shape) == 1:
        return nn.Linear(in_shape[0], out_shape[0], bias=False)
    stride = tuple(
        _projection_stride(a, b) for a, b in zip(in_shape[1:], out_shape[1:], strict=True)
    )
    conv = nn.Conv1d if len(in_shape) == 2 else nn.Conv2d
    return conv(in_shape[0], out_shape[0], 1, stride=stride, bias=False)

# Activations decide the gain of He/Xavier initialisation for the layer before them: the
# nonlinearity name torch.nn.init.calculate_gain takes. Activations it has no gain for (elu,
# gelu, silu, softplus, softmax, log_softmax) give the linear gain, 1.
ACTIVATION_GAIN_NAMES = {
    "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "selu": "selu",
    "leaky_relu": "leaky_relu",
    "prelu": "leaky_relu",  # with its initial slope, as in He et al. who introduced both
    "elu": "linear", "gelu": "linear", "silu": "linear", "softplus": "linear",
    "softmax": "linear", "log_softmax": "linear",
}
PRELU_INITIAL_SLOPE = 0.25  # torch's nn.PReLU default


def activation_slope(layer: Any) -> float | None:
    """The negative slope calculate_gain takes for a leaky_relu-like activation."""
    if layer.type == "leaky_relu":
        return layer.negative_slope
    if layer.type == "prelu":
        return PRELU_INITIAL_SLOPE
    return None
