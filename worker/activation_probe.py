"""Per-layer activation statistics for the diagnosis (core/diagnosis), at a bounded cost: one
forward pass in eval mode over at most PROBE_SAMPLES samples (the first of the validation
split, else of the training split), taken at each epoch's end with the gradient statistics
of worker/probes.py, through forward hooks that live only for that pass.

For each activation layer (its module path, as the other per-layer metrics name layers):
- `act_mean/<layer>`, `act_std/<layer>`: mean and standard deviation of its outputs;
- ReLU-like layers (relu, leaky_relu, prelu, elu, selu, gelu, silu): `dead_share/<layer>`,
  the share of its units whose output is <= 0 for every sample of the batch (a unit: a
  feature of a (N, F) output, a channel of a (N, C, ...) output, over every position);
- sigmoid and tanh layers: `saturated_share/<layer>`, the share of its outputs within
  SATURATION_MARGIN of the function's bounds (sigmoid < 0.01 or > 0.99; tanh |y| > 0.99),
  where its gradient is below about 0.01 (sigmoid) or 0.02 (tanh).
For each layer with a weight matrix or kernel (linear, conv, maxout, residual projections):
`zero_weight_share/<layer>`, the share of its weights with |w| < ZERO_WEIGHT_RELATIVE x the
layer's largest |w| (relative, so that it reads the same at any weight scale; L1's sparsity
shows as this share rising).
Everything stays on the device until one transfer at the end.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from core.diagnosis.thresholds import PROBE_SAMPLES, SATURATION_MARGIN, ZERO_WEIGHT_RELATIVE

RELU_LIKE = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU)
SATURATING = (nn.Sigmoid, nn.Tanh)


def probe_sample(x_val, x_train) -> torch.Tensor | None:
    """The probe's batch: the first PROBE_SAMPLES samples of the validation split, else of the
    training split (both already on the device, or streamed inputs, which slice alike)."""
    source = x_val if x_val is not None and len(x_val) else x_train
    if source is None or not len(source):
        return None
    return source[:PROBE_SAMPLES]


class ActivationProbe:
    def __init__(self, model: nn.Module, sample: torch.Tensor | None) -> None:
        self.model = model
        self.sample = sample
        self.activations = [(name, module) for name, module in model.named_modules()
                            if isinstance(module, RELU_LIKE + SATURATING)]
        self.weights = [(name, module.weight) for name, module in model.named_modules()
                        if isinstance(getattr(module, "weight", None), nn.Parameter)
                        and module.weight.dim() >= 2]

    def measure(self) -> dict[str, float]:
        if self.sample is None or not (self.activations or self.weights):
            return {}
        names: list[str] = []
        values: list[torch.Tensor] = []

        def hook(name: str, module: nn.Module):
            def record(_module, _inputs, out: torch.Tensor) -> None:
                out = out.detach().float()
                names.extend([f"act_mean/{name}", f"act_std/{name}"])
                values.extend([out.mean(), out.std(unbiased=False)])
                if isinstance(module, SATURATING):
                    if isinstance(module, nn.Sigmoid):
                        saturated = (out < SATURATION_MARGIN) | (out > 1 - SATURATION_MARGIN)
                    else:
                        saturated = out.abs() > 1 - SATURATION_MARGIN
                    names.append(f"saturated_share/{name}")
                    values.append(saturated.float().mean())
                elif out.dim() >= 2:
                    units = out.transpose(0, 1).reshape(out.shape[1], -1)
                    names.append(f"dead_share/{name}")
                    values.append(1 - (units > 0).any(dim=1).float().mean())
            return record

        handles = [module.register_forward_hook(hook(name, module))
                   for name, module in self.activations]
        training = self.model.training
        try:
            self.model.eval()
            with torch.no_grad():
                if self.activations:
                    self.model(self.sample)
                for name, weight in self.weights:
                    size = weight.detach().abs()
                    names.append(f"zero_weight_share/{name}")
                    values.append((size < ZERO_WEIGHT_RELATIVE * size.max()).float().mean())
                numbers = torch.stack(values).tolist() if values else []  # one transfer
        finally:
            for handle in handles:
                handle.remove()
            self.model.train(training)
        # A module called twice (a shared activation) keeps its last call's values.
        return {name: value for name, value in zip(names, numbers, strict=True)
                if math.isfinite(value)}
