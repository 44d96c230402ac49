"""Weight and bias initialisation for linear, conv and maxout layers (and residual projections).

Every scheme is torch.nn.init's own function, so a seeded build draws exactly what
torch.nn.init draws on a module of the same shape. The module is constructed first (torch
draws its default weight and bias then), the weight scheme runs next and the bias scheme last.
"""

from __future__ import annotations

import torch
from pydantic import TypeAdapter
from torch import nn

from models.init_spec import BiasInitSpec, InitSpec, TorchDefaultInit, ZerosInit

_WEIGHT_SCHEME = TypeAdapter(InitSpec)
_BIAS_SCHEME = TypeAdapter(BiasInitSpec)


def init_weights(
    module: nn.Module, scheme: InitSpec | str, nonlinearity: str = "linear",
    slope: float | None = None,
) -> None:
    """Initialise a layer's weight in place (its bias is init_bias's).

    `scheme` is a parsed spec object or a bare name ("he_normal"). `nonlinearity` is the
    activation that follows the layer, as torch.nn.init.calculate_gain names it ("relu",
    "leaky_relu", "selu", "tanh", "sigmoid" or "linear"), and `slope` the negative slope of a
    leaky_relu (None: torch's 0.01); He and Xavier take their gain from it, unless a Xavier
    scheme gives its own (gain 1: the textbook scheme). normal, uniform and
    orthogonal take their values from the scheme alone. torch_default leaves the weight as
    PyTorch initialised it.
    """
    if isinstance(scheme, str):
        scheme = _WEIGHT_SCHEME.validate_python(scheme)
    kind = scheme.type
    if kind == "torch_default":
        return
    weight = module.weight
    gain = nn.init.calculate_gain(nonlinearity, slope)
    a = 0.01 if slope is None else slope  # kaiming's `a` is the leaky_relu slope; others ignore it
    with torch.no_grad():
        if kind == "normal":
            nn.init.normal_(weight, mean=0.0, std=scheme.std)
        elif kind == "uniform":
            nn.init.uniform_(weight, *scheme.low_high)
        elif kind == "orthogonal":
            nn.init.orthogonal_(weight, gain=scheme.gain)
        elif kind == "zeros":
            nn.init.zeros_(weight)
        elif kind == "xavier_uniform":
            nn.init.xavier_uniform_(weight, gain=gain if scheme.gain is None else scheme.gain)
        elif kind == "xavier_normal":
            nn.init.xavier_normal_(weight, gain=gain if scheme.gain is None else scheme.gain)
        elif kind == "he_uniform":
            nn.init.kaiming_uniform_(weight, a=a, nonlinearity=nonlinearity)
        elif kind == "he_normal":
            nn.init.kaiming_normal_(weight, a=a, nonlinearity=nonlinearity)
        else:  # pragma: no cover - the spec's union rules this out
            raise ValueError(f"unknown init scheme {kind!r}")


def bias_scheme(
    weight_scheme: InitSpec, layer_bias: BiasInitSpec | None, model_bias: BiasInitSpec | None
) -> BiasInitSpec:
    """The bias scheme that applies to a layer: its own, else the model's, else zeros, except
    that weights left at torch_default keep torch's bias too (as torch initialises both)."""
    if layer_bias is not None:
        return layer_bias
    if model_bias is not None:
        return model_bias
    if weight_scheme.type == "torch_default":
        return TorchDefaultInit(type="torch_default")
    return ZerosInit(type="zeros")


def init_bias(module: nn.Module, scheme: BiasInitSpec | str) -> None:
    """Initialise a layer's bias in place; a layer without a bias is left alone."""
    if isinstance(scheme, str):
        scheme = _BIAS_SCHEME.validate_python(scheme)
    bias = getattr(module, "bias", None)
    if bias is None or scheme.type == "torch_default":
        return
    with torch.no_grad():
        if scheme.type == "zeros":
            nn.init.zeros_(bias)
        elif scheme.type == "constant":
            nn.init.constant_(bias, scheme.value)
        elif scheme.type == "normal":
            nn.init.normal_(bias, mean=0.0, std=scheme.std)
        elif scheme.type == "uniform":
            nn.init.uniform_(bias, *scheme.low_high)
        else:  # pragma: no cover - the spec's union rules this out
            raise ValueError(f"unknown bias init scheme {scheme.type!r}")
