"""A checkpoint made ready to run: the network with the job's input normalisation folded in as
its first step, and what a caller needs to feed it and read its answers (input shape, task,
class and feature names). Pure PyTorch: no database, no files; inference/job_bundle.py finds
the checkpoint and the dataset description for a job.

The folded step computes `(x - shift) / scale` with the checkpoint's statistics, the very
operations worker/data.py `normalize_inputs` applies while training, so a bundle fed raw
inputs gives the values the trained network gave on normalised ones, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.datasets import DatasetInfo
from models.build import build_model
from models.spec import ModelSpec


class Normalize(nn.Module):
    """`(x - shift) / scale`, per feature: standardisation (mean, std), min-max scaling (min,
    max - min, a constant feature's range taken as 1) or nothing (no buffers, identity)."""

    def __init__(self, normalization: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.kind = normalization_kind(normalization)
        if self.kind != "none":
            shift, scale = shift_and_scale(normalization)
            self.register_buffer("shift", shift.detach().to(torch.float32).clone())
            self.register_buffer("scale", scale.detach().to(torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        return (x - self.shift) / self.scale

    def extra_repr(self) -> str:
        return f"kind={self.kind}"


class Predictor(nn.Module):
    """Raw float32 inputs (N, *input_shape) -> the network's outputs: logits for
    classification and multilabel, values for regression."""

    def __init__(self, normalize: Normalize, network: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalize(x))


@dataclass(frozen=True)
class Bundle:
    module: nn.Module  # a Predictor, eval mode, CPU, no gradients
    input_shape: tuple[int, ...]
    task: str  # as core/datasets.DatasetInfo.task
    class_names: list[str] | None
    feature_names: list[str] | None
    step: int
    metrics: dict[str, float] = field(default_factory=dict)  # at that step ({} when unknown)
    spec: dict[str, Any] = field(default_factory=dict)  # the job spec
    # The folded preprocessing, for files that describe it beside the graph (model.json):
    # {"kind": "standardize" | "minmax" | "none", "shift": [...], "scale": [...]}.
    preprocessing: dict[str, Any] = field(default_factory=dict)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(x)


def normalization_kind(normalization: dict[str, torch.Tensor]) -> str:
    if not normalization:
        return "none"
    return "standardize" if "mean" in normalization else "minmax"


def shift_and_scale(normalization: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """As worker/data.py `_shift_and_scale` (the API and this package may not import the
    worker): mean and std, or min and the range with a constant feature's range taken as 1."""
    if "mean" in normalization:
        return normalization["mean"], normalization["std"]
    low, span = normalization["min"], normalization["max"] - normalization["min"]
    return low, torch.where(span < 1e-6, torch.ones_like(span), span)


def class_names_of(info: DatasetInfo) -> list[str] | None:
    """The dataset's class names; for a classification set that has none, "0".."k-1", the
    labels it was trained on, so that every classifier's answers carry a name."""
    if info.class_names:
        return [str(name) for name in info.class_names]
    if info.task == "classification" and info.num_classes:
        return [str(i) for i in range(info.num_classes)]
    return None


def load_bundle(payload: dict[str, Any], info: DatasetInfo,
                metrics: dict[str, float] | None = None) -> Bundle:
    """`payload` is a checkpoint file's content (worker/checkpoints.py load_checkpoint);
    `info` describes the dataset the job trained on; `metrics` those recorded at the
    checkpoint's step (default: the ones the checkpoint holds)."""
    spec = payload["spec"]
    model_spec = ModelSpec.model_validate(spec["model"])
    # Building initialises the weights from torch's global generator: keep the caller's draw.
    with torch.random.fork_rng(devices=[]):
        network, _ = build_model(model_spec, tuple(info.input_shape), shape_device="cpu")
    network.load_state_dict(payload["model"])
    normalization = payload.get("normalization") or {}
    module = Predictor(Normalize(normalization), network).eval().requires_grad_(False)
    feature_names = getattr(info, "feature_names", None)
    return Bundle(
        module=module,
        input_shape=tuple(info.input_shape),
        task=info.task,
        class_names=class_names_of(info),
        feature_names=[str(n) for n in feature_names] if feature_names else None,
        step=int(payload["step"]),
        metrics={k: float(v) for k, v in (metrics if metrics is not None
                                           else payload.get("metrics") or {}).items()
                 if isinstance(v, int | float)},
        spec=spec,
        preprocessing=_preprocessing(module.normalize),
    )


def _preprocessing(normalize: Normalize) -> dict[str, Any]:
    if normalize.kind == "none":
        return {"kind": "none"}
    return {"kind": normalize.kind, "formula": "(x - shift) / scale",
            "shift": normalize.shift.tolist(), "scale": normalize.scale.tolist()}
