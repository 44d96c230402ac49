"""Per-layer activation statistics for the diagnosis (core/diagnosis), at a bounded cost: the
probe watches the validation pass the loop makes anyway (training.eval_every_epochs or
eval_every_steps: the evaluation schedule) through forward hooks that live only for that
pass, and reads the first PROBE_SAMPLES samples of each activation layer's first output
batch. No forward pass of its own, except for a job without a validation split: there it
runs one at each epoch's end, in eval mode, over the first PROBE_SAMPLES training samples.

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
Everything stays on the device until one transfer in `collect`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from core.diagnosis.thresholds import PROBE_SAMPLES, SATURATION_MARGIN, ZERO_WEIGHT_RELATIVE

RELU_LIKE = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU)
SATURATING = (nn.Sigmoid, nn.Tanh)


class ActivationProbe:
    """`with probe.watching(): <a forward pass>` then `probe.collect()`; or `measure()`,
    which makes its own pass over `sample`."""

    def __init__(self, model: nn.Module, sample: torch.Tensor | None = None) -> None:
        self.model = model
        self.sample = sample
        self.activations = [(name, module) for name, module in model.named_modules()
                            if isinstance(module, RELU_LIKE + SATURATING)]
        self.weights = [(name, module.weight) for name, module in model.named_modules()
                        if isinstance(getattr(module, "weight", None), nn.Parameter)
                        and module.weight.dim() >= 2]
        self._seen: set[str] = set()
        self._names: list[str] = []
        self._values: list[torch.Tensor] = []

    def _record(self, name: str, module: nn.Module, out: torch.Tensor) -> None:
        if name in self._seen:  # the pass's first batch only (and a shared module once)
            return
        self._seen.add(name)
        out = out[:PROBE_SAMPLES].detach().float()
        self._names.extend([f"act_mean/{name}", f"act_std/{name}"])
        self._values.extend([out.mean(), out.std(unbiased=False)])
        if isinstance(module, SATURATING):
            if isinstance(module, nn.Sigmoid):
                saturated = (out < SATURATION_MARGIN) | (out > 1 - SATURATION_MARGIN)
            else:
                saturated = out.abs() > 1 - SATURATION_MARGIN
            self._names.append(f"saturated_share/{name}")
            self._values.append(saturated.float().mean())
        elif out.dim() >= 2:
            active = out > 0
            if out.dim() > 2:
                active = active.transpose(0, 1).reshape(out.shape[1], -1).transpose(0, 1)
            self._names.append(f"dead_share/{name}")
            self._values.append(1 - active.any(dim=0).float().mean())

    @contextmanager
    def watching(self) -> Iterator[None]:
        """Record the activation layers' outputs of the forward passes made inside."""
        self._seen, self._names, self._values = set(), [], []

        def hook(name: str):
            return lambda module, _inputs, out: self._record(name, module, out)

        handles = [module.register_forward_hook(hook(name))
                   for name, module in self.activations]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def collect(self) -> dict[str, float]:
        """What the last watched pass recorded, and the weights' zero shares, by metric name."""
        names, values = self._names, self._values
        self._names, self._values = [], []
        with torch.no_grad():
            for name, weight in self.weights:
                size = weight.detach().abs()
                names.append(f"zero_weight_share/{name}")
                values.append((size < ZERO_WEIGHT_RELATIVE * size.max()).float().mean())
            numbers = torch.stack(values).tolist() if values else []  # one transfer
        return {name: value for name, value in zip(names, numbers, strict=True)
                if math.isfinite(value)}

    def measure(self) -> dict[str, float]:
        """Its own pass over `sample`, in eval mode; the model's mode is left as it was."""
        if self.sample is None:
            return {}
        training = self.model.training
        try:
            self.model.eval()
            with self.watching(), torch.no_grad():
                if self.activations:
                    self.model(self.sample[:PROBE_SAMPLES])
        finally:
            self.model.train(training)
        return self.collect()
