"""Mixed precision and torch.compile, each falling back to the plain path with a stated reason
when the device or the network cannot take it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Precision:
    """How the forward pass and the loss run: autocast to `dtype` (None: fp32), and a gradient
    scaler for fp16, whose small range would otherwise flush gradients to zero."""

    device_type: str
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None
    note: str | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def resolve_precision(wanted: str, device: torch.device) -> Precision:
    if wanted == "fp32":
        return Precision(device.type)
    if device.type == "cuda" and wanted == "bf16" and not torch.cuda.is_bf16_supported():
        return Precision(device.type, note=(
            "training.precision bf16: this GPU has no bfloat16 support; trained in fp32 "
            "(use fp16 on this GPU)"))
    if wanted == "bf16":
        return Precision(device.type, torch.bfloat16)
    return Precision(device.type, torch.float16, torch.amp.GradScaler(device.type))


def compile_network(model: nn.Module, sample: torch.Tensor) -> tuple[nn.Module, str | None]:
    """torch.compile the network and run one forward and backward on `sample`, so that a
    network the compiler cannot take fails here rather than mid-run. The trial leaves no trace:
    weights, buffers (batchnorm statistics), gradients and every random generator are as
    before. Returns the module to train with and, on failure, why it is the uncompiled one."""
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    devices = [sample.device.index or 0] if sample.device.type == "cuda" else []
    try:
        compiled = torch.compile(model)
        with torch.random.fork_rng(devices=devices):
            model.train()
            compiled(sample).float().sum().backward()
    except Exception as exc:  # the compiler's failures have no common type
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return model, (f"training.compile: torch.compile failed ({type(exc).__name__}: "
                       f"{first_line}); trained uncompiled")
    finally:
        model.zero_grad(set_to_none=True)
        model.load_state_dict(saved)
    return compiled, None
