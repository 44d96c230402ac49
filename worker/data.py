"""Dataset -> tensors on the training device: validation split, input normalisation."""

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
    # Per-feature statistics of the training split, saved in checkpoints as they are:
    # {"mean", "std"} (standardize), {"min", "max"} (minmax) or {} (none); see normalize_inputs.
    normalization: dict[str, torch.Tensor]
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


def minmax_stats(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature minimum and maximum of the training split."""
    return x_train.min(axis=0).astype(np.float32), x_train.max(axis=0).astype(np.float32)


def normalization_stats(x_train: np.ndarray, kind: str) -> dict[str, torch.Tensor]:
    """The statistics `dataset.normalize` asks for, from the training split's inputs."""
    if kind == "standardize":
        mean, std = standardize_stats(x_train)
        return {"mean": torch.from_numpy(mean), "std": torch.from_numpy(std)}
    if kind == "minmax":
        low, high = minmax_stats(x_train)
        return {"min": torch.from_numpy(low), "max": torch.from_numpy(high)}
    return {}


def normalize_inputs(x: torch.Tensor, normalization: dict[str, torch.Tensor]) -> torch.Tensor:
    """Apply saved statistics (TrainData.normalization, a checkpoint's `normalization`) to
    raw inputs. A constant feature (max - min below 1e-6) gets range 1 so that it maps to
    zero rather than to NaN, as standardize_stats does for std."""
    if not normalization:
        return x
    shift, scale = _shift_and_scale(normalization)
    return (x - shift) / scale


def _shift_and_scale(normalization: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    if "mean" in normalization:
        return normalization["mean"], normalization["std"]
    low, span = normalization["min"], normalization["max"] - normalization["min"]
    return low, torch.where(span < 1e-6, torch.ones_like(span), span)


def prepare_data(spec: JobSpec, device: torch.device) -> TrainData:
    info = datasets.describe(spec.dataset.name, spec.dataset.options())
    arrays = datasets.load(spec.dataset.name, spec.dataset.options())
    labels = arrays.y_train if info.task == "classification" else None
    train_idx, val_idx = datasets.split_indices(
        len(arrays.x_train), spec.dataset.val_fraction, spec.dataset.seed, labels
    )
    x_train, y_train = arrays.x_train[train_idx], arrays.y_train[train_idx]
    x_val, y_val = arrays.x_train[val_idx], arrays.y_train[val_idx]

    normalization = normalization_stats(x_train, spec.dataset.normalize)

    def to_device(x: np.ndarray | None, features: bool) -> torch.Tensor | None:
        if x is None or len(x) == 0:
            return None
        t = torch.from_numpy(np.ascontiguousarray(x))
        if features:
            t = normalize_inputs(t, normalization)
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
