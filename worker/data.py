"""Dataset -> tensors on the training device: validation split, standardisation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core import datasets
from core.jobspec import JobSpec


@dataclass
class TrainData:
    """Everything fits in device memory: the loop indexes these tensors directly."""

    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    normalization: dict[str, torch.Tensor]  # mean and std, per feature; empty when off
    num_classes: int | None = None  # classification only

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def standardize_stats(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of the training split. Constant features (a digit image's
    always-blank border) get std 1 so they map to zero rather than to NaN."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std < 1e-6, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def prepare_data(spec: JobSpec, device: torch.device) -> TrainData:
    info = datasets.describe(spec.dataset.name, spec.dataset.options())
    arrays = datasets.load(spec.dataset.name, spec.dataset.options())
    labels = arrays.y_train if info.task == "classification" else None
    train_idx, val_idx = datasets.split_indices(
        len(arrays.x_train), spec.dataset.val_fraction, spec.dataset.seed, labels
    )
    x_train, y_train = arrays.x_train[train_idx], arrays.y_train[train_idx]
    x_val, y_val = arrays.x_train[val_idx], arrays.y_train[val_idx]

    normalization: dict[str, torch.Tensor] = {}
    if spec.dataset.normalize == "standardize":
        mean, std = standardize_stats(x_train)
        normalization = {"mean": torch.from_numpy(mean), "std": torch.from_numpy(std)}

    def to_device(x: np.ndarray | None, features: bool) -> torch.Tensor | None:
        if x is None or len(x) == 0:
            return None
        t = torch.from_numpy(np.ascontiguousarray(x))
        if features and normalization:
            t = (t - normalization["mean"]) / normalization["std"]
        return t.to(device)

    return TrainData(
        task=info.task,
        x_train=to_device(x_train, True),
        y_train=to_device(y_train, False),
        x_val=to_device(x_val, True),
        y_val=to_device(y_val, False),
        x_test=to_device(arrays.x_test, True),
        y_test=to_device(arrays.y_test, False),
        normalization=normalization,
        num_classes=info.num_classes,
    )
