"""Weight initialisation schemes for linear and conv layers."""

from __future__ import annotations

import torch
from torch import nn

from models.spec import InitName


def init_weights(
    module: nn.Module, scheme: InitName, nonlinearity: str = "linear", slope: float | None = None
) -> None:
    """Initialise a linear or conv layer in place.

    `nonlinearity` is the activation that follows the layer, as torch.nn.init.calculate_gain
    names it ("relu", "leaky_relu", "selu", "tanh", "sigmoid" or "linear"), and `slope` the
    negative slope of a leaky_relu (None: torch's 0.01); He and Xavier take their gain from it.
    Biases start at zero except with torch_default, which keeps PyTorch's own initialisation
    for weight and bias alike.
    """
    if scheme == "torch_default":
        return
    weight = module.weight
    gain = nn.init.calculate_gain(nonlinearity, slope)
    a = 0.01 if slope is None else slope  # kaiming's `a` is the leaky_relu slope; others ignore it
    with torch.no_grad():
        if scheme == "normal":
            nn.init.normal_(weight, mean=0.0, std=0.01)
        elif scheme == "zeros":
            nn.init.zeros_(weight)
        elif scheme == "xavier_uniform":
            nn.init.xavier_uniform_(weight, gain=gain)
        elif scheme == "xavier_normal":
            nn.init.xavier_normal_(weight, gain=gain)
        elif scheme == "he_uniform":
            nn.init.kaiming_uniform_(weight, a=a, nonlinearity=nonlinearity)
        elif scheme == "he_normal":
            nn.init.kaiming_normal_(weight, a=a, nonlinearity=nonlinearity)
        else:  # pragma: no cover - the spec's Literal rules this out
            raise ValueError(f"unknown init scheme {scheme!r}")
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
