"""The L1 penalty and gradient clipping (`regularization` in the spec)."""

from __future__ import annotations

import torch
from torch import nn

from models.layers import Maxout

# The layers whose weights the L1 penalty covers: those that mix inputs. Biases and the scale
# of normalisation layers are left alone, as weight-decay exclusions usually leave them.
PENALISED = (nn.Linear, nn.Conv1d, nn.Conv2d, Maxout)


def l1_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [
        module.weight for module in model.modules()
        if isinstance(module, PENALISED) and module.weight.requires_grad
    ]


def l1_penalty(params: list[nn.Parameter], coefficient: float) -> torch.Tensor:
    """coefficient * sum(|w|), as a 0-d tensor on the parameters' device."""
    return coefficient * torch.stack([p.abs().sum() for p in params]).sum()


def clip_gradients(params: list[nn.Parameter], by: str, limit: float) -> torch.Tensor:
    """Clip in place; returns the total L2 norm of the gradients before clipping (no host
    sync)."""
    if by == "norm":
        return nn.utils.clip_grad_norm_(params, limit)
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    nn.utils.clip_grad_value_(params, limit)
    return norm
