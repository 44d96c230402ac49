"""Per-layer gradient and weight statistics, taken at one optimizer step per epoch, so that
vanishing and exploding gradients show up as metrics: `grad_norm/<layer>`,
`weight_norm/<layer>` and `update_ratio/<layer>` = ||w_after - w_before|| / ||w_before||.

A layer is a module that owns parameters directly (linear, conv, maxout, batchnorm,
layernorm, prelu, a residual block's shortcut projection); its name is its module path, as
in the parameter names (`layers.0`, `layers.3.layers.1`, `layers.3.shortcut`), and each
statistic is taken over all of its parameters together (weight and bias). A frozen layer
(no parameter requires grad) reports its weight_norm only: it has no gradient and does not
move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class _Layer:
    name: str
    module: nn.Module
    trainable: bool  # some parameter requires grad


def _parametrised_layers(model: nn.Module) -> list[_Layer]:
    layers = []
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if params:
            layers.append(_Layer(name, module, any(p.requires_grad for p in params)))
    return layers


def _segment_norms(norms: list[torch.Tensor], owner: torch.Tensor, count: int) -> torch.Tensor:
    """sqrt(sum of squares) of the tensor norms owned by each layer: the norm of the layer's
    tensors taken together. One scatter instead of a reduction per layer."""
    total = torch.zeros(count, dtype=torch.float32, device=owner.device)
    if norms:
        total.index_add_(0, owner, torch.stack(norms).float().square())
    return total.sqrt()


def _norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch._foreach_norm(tensors)) if tensors else []


class LayerProbe:
    """Call `after_backward` once the step's gradients are complete (before clipping), then
    `after_step` once the optimizer has stepped; it returns metric values by name, grouped by
    statistic and in the model's order within each. Everything stays on the device until one
    transfer at the end of `after_step`."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        # Decided once, so that the names are the same every epoch.
        self.layers = _parametrised_layers(model)
        self.trained = [layer for layer in self.layers if layer.trainable]
        self._owners: dict[tuple[str, torch.device], torch.Tensor] = {}
        self._pending: tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]] | None = None

    def _params(self, which: str) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The parameters of `which` layers ("all": every parametrised layer, its frozen
        parameters too; "trained": the trainable layers, every parameter; "moving": the
        trainable parameters of the trainable layers) and each one's layer index, on the
        parameters' device (copied there once)."""
        layers = self.layers if which == "all" else self.trained
        params, owner = [], []
        for i, layer in enumerate(layers):
            for p in layer.module.parameters(recurse=False):
                if which != "moving" or p.requires_grad:
                    params.append(p)
                    owner.append(i)
        key = (which, params[0].device)
        if key not in self._owners:
            self._owners[key] = torch.tensor(owner, dtype=torch.long, device=key[1])
        return params, self._owners[key]

    def after_backward(self) -> None:
        if not self.trained:
            return
        with torch.no_grad():
            moving, owner = self._params("moving")
            # A parameter outside this step's graph has no gradient: it adds nothing.
            present = iter(_norms([p.grad for p in moving if p.grad is not None]))
            grads = [next(present) if p.grad is not None else p.new_zeros(()) for p in moving]
            grad_norm = _segment_norms(grads, owner, len(self.trained))
            every, every_owner = self._params("trained")
            before = _segment_norms(_norms(every), every_owner, len(self.trained))
            # Only what can move is copied: the trainable parameters of the trained layers.
            snapshot = [p.detach().clone() for p in moving]
        self._pending = (grad_norm, before, snapshot)

    def after_step(self) -> dict[str, float]:
        if not self.layers:
            return {}
        with torch.no_grad():
            every, every_owner = self._params("all")
            weight_norm = _segment_norms(_norms(every), every_owner, len(self.layers))
            stats = [weight_norm]
            if self.trained:
                if self._pending is None:
                    raise RuntimeError("LayerProbe.after_step called without after_backward")
                grad_norm, before, snapshot = self._pending
                moving, owner = self._params("moving")
                torch._foreach_sub_(snapshot, [p.detach() for p in moving])  # in place: -Δw
                update = _segment_norms(_norms(snapshot), owner, len(self.trained))
                # Weights that were all zero: 1 if they moved (the update is the whole weight),
                # 0 if not; never inf or NaN.
                ratio = torch.where(before > 0, update / before.clamp_min(1e-30),
                                    (update > 0).float())
                stats = [grad_norm, weight_norm, ratio]
            values = torch.cat(stats).tolist()  # the one transfer to the host
        self._pending = None
        names = ([f"grad_norm/{layer.name}" for layer in self.trained]
                 + [f"weight_norm/{layer.name}" for layer in self.layers]
                 + [f"update_ratio/{layer.name}" for layer in self.trained])
        # A non-finite value (an overflowed fp16 step) is left out: the job summary is JSON,
        # which holds no inf or NaN, and the loss check reports a real divergence.
        return {name: value for name, value in zip(names, values, strict=True)
                if math.isfinite(value)}
