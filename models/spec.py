"""Pydantic specs for the network: one class per layer type, discriminated by `type`.

Users give only output sizes (`out_features`, `out_channels`); input sizes are inferred
from the dataset when the network is built (models/build.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from models.init_spec import BIAS_INIT_DESCRIPTION, INIT_DESCRIPTION, BiasInitSpec, InitSpec
from models.strict import StrictModel

PositiveInt = Annotated[int, Field(gt=0)]
Size1d = Annotated[int, Field(gt=0, le=4096)]
Size2d = Size1d | tuple[Size1d, Size1d]
Padding = Annotated[int, Field(ge=0, le=1024)] | Literal["same", "valid"]

class _Layer(StrictModel):
    name: str | None = Field(None, max_length=100, description="optional label for summaries")


class _Weighted(_Layer):
    """A layer with learnt parameters, which can be frozen."""

    frozen: StrictBool = Field(
        False,
        description="keep this layer's initial parameters: the optimizer does not update them "
        "and the summary counts them as non-trainable (a frozen batchnorm still updates its "
        "running statistics in training)",
    )


class _Initialised(_Weighted):
    """A linear or conv projection: it takes the model's init schemes or its own."""

    bias: StrictBool = Field(True, description="add a learnt bias")
    init: InitSpec | None = Field(None, description="overrides model.init for this layer")
    bias_init: BiasInitSpec | None = Field(
        None, description="overrides model.bias_init for this layer"
    )

    @model_validator(mode="after")
    def _bias_init_needs_a_bias(self) -> _Initialised:
        if self.bias_init is not None and not self.bias:
            raise ValueError("bias_init is given but bias is false; remove bias_init or set bias")
        return self


class LinearSpec(_Initialised):
    type: Literal["linear"]
    out_features: int = Field(
        gt=0, le=1_000_000, description="output size; the input size is inferred"
    )


class _ConvSpec(_Initialised):
    out_channels: int = Field(
        gt=0, le=65_536, description="output channels; the input channels are inferred"
    )
    kernel_size: Size2d = Field(3, description="window size: a number, or [height, width]")
    stride: Size2d = Field(1, description="step between windows: a number, or [height, width]")
    padding: Padding = Field(
        0, description="zeros added on each side: a number, 'same' (output size = input size; "
        "stride 1 only) or 'valid' (none)"
    )
    dilation: Size2d = Field(1, description="spacing between kernel elements")
    groups: Annotated[int, Field(ge=1, le=65_536)] = Field(
        1, description="must divide both the input channels and out_channels"
    )


class Conv1dSpec(_ConvSpec):
    type: Literal["conv1d"]
    kernel_size: Size1d = Field(3, description="window length")
    stride: Size1d = Field(1, description="step between windows")
    dilation: Size1d = Field(1, description="spacing between kernel elements")


class Conv2dSpec(_ConvSpec):
    type: Literal["conv2d"]


class _Pool1d(_Layer):
    kernel_size: Size1d = Field(2, description="window length")
    stride: Size1d | None = Field(None, description="defaults to kernel_size")


class _Pool2d(_Layer):
    kernel_size: Size2d = Field(2, description="window size: a number, or [height, width]")
    stride: Size2d | None = Field(None, description="defaults to kernel_size")


class MaxPool1dSpec(_Pool1d):
    type: Literal["maxpool1d"]


class MaxPool2dSpec(_Pool2d):
    type: Literal["maxpool2d"]


class AvgPool1dSpec(_Pool1d):
    type: Literal["avgpool1d"]


class AvgPool2dSpec(_Pool2d):
    type: Literal["avgpool2d"]


class GlobalAvgPoolSpec(_Layer):
    type: Literal["global_avg_pool"]


class FlattenSpec(_Layer):
    type: Literal["flatten"]


class ReshapeSpec(_Layer):
    type: Literal["reshape"]
    shape: list[int] = Field(
        min_length=1, max_length=4, description="per-sample shape; one entry may be -1"
    )

    @field_validator("shape")
    @classmethod
    def _one_free_dim(cls, value: list[int]) -> list[int]:
        if sum(d == -1 for d in value) > 1:
            raise ValueError("at most one dimension may be -1")
        if any(d == 0 or d < -1 for d in value):
            raise ValueError("dimensions must be positive, or -1 for the one inferred")
        return value


class DropoutSpec(_Layer):
    type: Literal["dropout"]
    p: float = Field(0.5, ge=0.0, lt=1.0, description="probability of zeroing an element")


class BatchNormSpec(_Weighted):
    type: Literal["batchnorm"]
    momentum: float = Field(
        0.1, gt=0.0, le=1.0, description="weight of each batch in the running statistics"
    )
    eps: float = Field(1e-5, gt=0.0, le=1.0, description="added to the variance")


class LayerNormSpec(_Weighted):
    type: Literal["layernorm"]
    dims: Annotated[int, Field(ge=1, le=4)] | None = Field(
        None, description="how many trailing dimensions to normalise over; null: all of them"
    )
    eps: float = Field(1e-5, gt=0.0, le=1.0, description="added to the variance")


class IdentitySpec(_Layer):
    type: Literal["identity"]


class ReluSpec(_Layer):
    type: Literal["relu"]


class SigmoidSpec(_Layer):
    type: Literal["sigmoid"]


class TanhSpec(_Layer):
    type: Literal["tanh"]


class LeakyReluSpec(_Layer):
    type: Literal["leaky_relu"]
    negative_slope: float = Field(
        0.01, ge=0.0, le=1000.0, description="slope for negative inputs"
    )


class PReluSpec(_Weighted):
    type: Literal["prelu"]
    num_parameters: Literal["single", "channel"] = Field(
        "single", description="one learnt slope, or one per input channel (or feature)"
    )


class EluSpec(_Layer):
    type: Literal["elu"]
    alpha: float = Field(
        1.0, gt=0.0, le=1000.0, description="the value negative inputs saturate to is -alpha"
    )


class SeluSpec(_Layer):
    type: Literal["selu"]


class GeluSpec(_Layer):
    type: Literal["gelu"]
    approximate: Literal["none", "tanh"] = Field(
        "none", description="none: the exact erf form; tanh: the tanh approximation"
    )


class SiluSpec(_Layer):
    type: Literal["silu"]


class SoftplusSpec(_Layer):
    type: Literal["softplus"]
    beta: float = Field(
        1.0, gt=0.0, le=1000.0, description="log(1 + exp(beta x)) / beta: sharper when larger"
    )
    threshold: float = Field(
        20.0, gt=0.0, le=1000.0, description="above threshold / beta the layer is linear"
    )


class SoftmaxSpec(_Layer):
    type: Literal["softmax"]


class LogSoftmaxSpec(_Layer):
    type: Literal["log_softmax"]


class MaxoutSpec(_Initialised):
    """A linear layer to out_features·pieces values, then the max over each unit's pieces."""

    type: Literal["maxout"]
    out_features: int = Field(gt=0, le=1_000_000, description="output units")
    pieces: Annotated[int, Field(ge=2, le=64)] = Field(
        2, description="linear pieces per output unit, at least 2"
    )


Pieces = Annotated[int, Field(ge=2, le=64, description="linear pieces per output unit, at least 2")]


class MaxoutConv1dSpec(Conv1dSpec):
    """A conv1d to out_channels·pieces channels, then the max over each output channel's
    pieces, at every position."""

    type: Literal["maxout_conv1d"]
    pieces: Pieces = 2


class MaxoutConv2dSpec(Conv2dSpec):
    """A conv2d to out_channels·pieces channels, then the max over each output channel's
    pieces, at every position (the convolutional maxout of Goodfellow et al., 2013)."""

    type: Literal["maxout_conv2d"]
    pieces: Pieces = 2


class ResidualSpec(_Layer):
    """`layers` applied in order, plus a shortcut from the block's input to their output."""

    type: Literal["residual"]
    layers: list[LayerSpec] = Field(
        min_length=1, max_length=256, description="the block's layers, applied in order"
    )


LayerSpec = Annotated[
    LinearSpec
    | Conv1dSpec
    | Conv2dSpec
    | MaxPool1dSpec
    | MaxPool2dSpec
    | AvgPool1dSpec
    | AvgPool2dSpec
    | GlobalAvgPoolSpec
    | FlattenSpec
    | ReshapeSpec
    | DropoutSpec
    | BatchNormSpec
    | LayerNormSpec
    | IdentitySpec
    | ReluSpec
    | SigmoidSpec
    | TanhSpec
    | LeakyReluSpec
    | PReluSpec
    | EluSpec
    | SeluSpec
    | GeluSpec
    | SiluSpec
    | SoftplusSpec
    | SoftmaxSpec
    | LogSoftmaxSpec
    | MaxoutSpec
    | MaxoutConv1dSpec
    | MaxoutConv2dSpec
    | ResidualSpec,
    Field(discriminator="type"),
]

ResidualSpec.model_rebuild()  # its `layers` refers to LayerSpec, defined after it

MAX_TOTAL_LAYERS = 256  # counting the layers inside residual blocks
MAX_NESTING = 16  # residual blocks inside residual blocks; deeper would strain the recursion


def count_layers(layers: list, depth: int = 1) -> tuple[int, int]:
    """How many layers there are in all, and how deep residual blocks nest."""
    count, deepest = len(layers), depth
    for layer in layers:
        if layer.type == "residual":
            inner, inner_depth = count_layers(layer.layers, depth + 1)
            count, deepest = count + inner, max(deepest, inner_depth)
    return count, deepest


class ModelSpec(StrictModel):
    init: InitSpec = Field(
        "torch_default",
        validate_default=True,  # the bare name becomes its object, as a submitted one does
        description=f"{INIT_DESCRIPTION}; applies to linear, conv and maxout layers and residual "
        "projections",
    )
    bias_init: BiasInitSpec | None = Field(
        None,
        description=f"{BIAS_INIT_DESCRIPTION}; null: zeros, except that a layer whose weights "
        "use torch_default keeps torch's own bias too",
    )
    layers: list[LayerSpec] = Field(
        min_length=1, max_length=MAX_TOTAL_LAYERS,
        description="the network, applied in order; each layer is an object with a type",
    )

    @model_validator(mode="after")
    def _bounded_nesting(self) -> ModelSpec:
        count, depth = count_layers(self.layers)
        if count > MAX_TOTAL_LAYERS:
            raise ValueError(
                f"the model has {count} layers counting those inside residual blocks; at most "
                f"{MAX_TOTAL_LAYERS} are allowed: use fewer or smaller blocks"
            )
        if depth - 1 > MAX_NESTING:
            raise ValueError(
                f"residual blocks nest {depth - 1} deep; at most {MAX_NESTING} levels are allowed"
            )
        return self
