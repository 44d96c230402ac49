"""The few facts about a run that the rules need beside its metric series: what the spec
says (the task, the learning rate, the schedule, clipping, normalisation, the activations)
and the run's length. Plain data, so that the rules are tested with a literal."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

SATURATING = ("sigmoid", "tanh")
RELU_LIKE = ("relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "silu")


@dataclass(frozen=True)
class RunFacts:
    task: str = "classification"  # classification | multilabel | regression
    num_classes: int | None = None  # classification only; 2 for a single-logit binary net
    loss: str = "cross_entropy"
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "constant"
    warmup: bool = False
    clip: bool = False
    normalize: str = "standardize"
    init: str = "torch_default"
    total_steps: int = 0
    weight_decay: float = 0.0
    early_stopping: bool = False
    # (spec path, type) of every activation layer, in order: "model.layers[1]", "sigmoid"
    activations: list[tuple[str, str]] = field(default_factory=list)
    weighted_layers: int = 0  # linear, conv and maxout layers: the network's depth
    batch_size: int = 64

    @property
    def chance_loss(self) -> float | None:
        """The loss of a network that predicts the uniform distribution over C balanced
        classes: ln C for cross_entropy, ln 2 for a binary bce_with_logits network."""
        if self.task != "classification" or not self.num_classes:
            return None
        if self.loss == "cross_entropy":
            return math.log(self.num_classes)
        if self.loss == "bce_with_logits" and self.num_classes == 2:
            return math.log(2)
        return None

    @property
    def chance_accuracy(self) -> float | None:
        if self.task != "classification" or not self.num_classes:
            return None
        return 1.0 / self.num_classes

    def activation_types(self) -> set[str]:
        return {kind for _, kind in self.activations}


def _walk(layers: list[Any], prefix: str) -> tuple[list[tuple[str, str]], int]:
    activations, weighted = [], 0
    for i, layer in enumerate(layers):
        path = f"{prefix}[{i}]"
        kind = layer.type
        if kind == "residual":
            inner, count = _walk(layer.layers, f"{path}.layers")
            activations += inner
            weighted += count
        elif kind in SATURATING or kind in RELU_LIKE:
            activations.append((path, kind))
        elif kind in ("linear", "conv1d", "conv2d", "maxout", "maxout_conv1d", "maxout_conv2d"):
            weighted += 1
    return activations, weighted


def facts_from_spec(spec: Any, *, task: str, num_classes: int | None,
                    total_steps: int) -> RunFacts:
    """The facts of a JobSpec (core/specs/job.py), read by attribute only: this package
    imports neither torch nor the specs' builders. `num_classes`: the dataset's classes
    (a binary bce_with_logits network counts 2)."""
    activations, weighted = _walk(spec.model.layers, "model.layers")
    schedule = spec.schedule.type
    warmup = schedule == "one_cycle" or (schedule == "warmup")
    return RunFacts(
        task=task, num_classes=num_classes, loss=spec.loss.type,
        optimizer=spec.optimizer.type, lr=float(getattr(spec.optimizer, "lr", 1.0)),
        schedule=schedule, warmup=warmup, clip=spec.regularization.clip_grad is not None,
        normalize=spec.dataset.normalize, init=spec.model.init.type,
        total_steps=total_steps,
        weight_decay=float(getattr(spec.optimizer, "weight_decay", 0.0) or 0.0),
        early_stopping=spec.training.early_stopping is not None,
        activations=activations, weighted_layers=weighted,
        batch_size=spec.training.batch_size,
    )
