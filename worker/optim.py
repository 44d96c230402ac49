"""Loss and optimizer from the spec."""

from __future__ import annotations

import torch
from torch import nn

from core.jobspec import JobSpec


def build_loss(spec: JobSpec) -> nn.Module:
    if spec.loss.type == "cross_entropy":
        return nn.CrossEntropyLoss()
    if spec.loss.type == "mse":
        return nn.MSELoss()
    raise ValueError(f"unknown loss {spec.loss.type!r}")  # the spec's union rules this out


def build_optimizer(spec: JobSpec, model: nn.Module) -> torch.optim.Optimizer:
    opt = spec.optimizer
    params = model.parameters()
    if opt.type == "sgd":
        return torch.optim.SGD(
            params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay
        )
    if opt.type == "adam":
        return torch.optim.Adam(
            params, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay
        )
    raise ValueError(f"unknown optimizer {opt.type!r}")
