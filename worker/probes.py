"""Per-layer gradient and weight statistics, taken at one optimizer step per epoch. (Filled
in by the per-layer metrics work.)"""

from __future__ import annotations

from torch import nn


class LayerProbe:
    """Call `after_backward` once the step's gradients are complete (before clipping), then
    `after_step` once the optimizer has stepped; it returns metric values by name."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def after_backward(self) -> None:
        pass

    def after_step(self) -> dict[str, float]:
        return {}
