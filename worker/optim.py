"""The optimizer from the spec (the loss is models/losses.py)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from core.jobspec import JobSpec

# The spec's field names are torch's keyword arguments, so a spec is built by passing them on.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
    "rmsprop": torch.optim.RMSprop,
}
# Batch, instance, layer and group normalisation: the layers `exclude_from_weight_decay: norm`
# spares.
NORM_LAYERS = (_NormBase, nn.LayerNorm, nn.GroupNorm)


def build_optimizer(spec: JobSpec, model: nn.Module) -> torch.optim.Optimizer:
    opt = spec.optimizer
    if opt.type not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {opt.type!r}")  # the spec's union rules this out
    hyper = opt.model_dump(exclude={"type", "exclude_from_weight_decay"})
    excluded = set(opt.exclude_from_weight_decay)
    if excluded:
        params = weight_decay_groups(model, excluded)
    else:  # frozen layers' parameters (requires_grad False) stay out of the optimizer
        params = [p for p in model.parameters() if p.requires_grad]
    return OPTIMIZERS[opt.type](params, **hyper)


def weight_decay_groups(model: nn.Module, excluded: set[str]) -> list[dict[str, Any]]:
    """Two parameter groups, in `named_parameters` order: the decayed parameters, then those
    named by `excluded` ("bias": names ending in "bias"; "norm": normalisation layers'
    parameters) with weight_decay 0. Frozen parameters (requires_grad False) are in neither;
    an empty group is left out."""
    norm_params = {
        id(p)
        for module in model.modules() if isinstance(module, NORM_LAYERS)
        for p in module.parameters(recurse=False)
    }
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        spared = ("bias" in excluded and name.endswith("bias")) or (
            "norm" in excluded and id(param) in norm_params
        )
        (no_decay if spared else decay).append(param)
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]
