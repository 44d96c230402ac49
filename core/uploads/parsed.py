"""What every upload format parses into, and how a refusal is said."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

UploadTask = Literal["classification", "regression"]
SPLITS = ("train", "val", "test")


class UploadError(ValueError):
    """An upload that cannot become a dataset. `field` names what to change (`file`,
    `target`, `file: x_train`, ...); the API answers `status` with the message."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclass
class Parsed:
    """A dataset ready to store: float32 features (n, *input_shape) and targets per split;
    int64 class labels 0..C-1 (n,) for classification, float32 (n, k) for regression. The
    val and test splits are optional: jobs cut what is missing (dataset.val_fraction, and a
    fixed test split)."""

    task: UploadTask
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    # classification: the name of each class (csv categories, image folders), in label order;
    # None when the labels were integers already.
    class_names: list[str] | None = None
    # the name of each input feature (csv header columns, an npz's `feature_names`), in
    # column order; None for images and for arrays given without names.
    feature_names: list[str] | None = None
    notes: list[str] = field(default_factory=list)  # what parsing decided, for the user

    def split(self, name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int | None:
        if self.task != "classification":
            return None
        if self.class_names:
            return len(self.class_names)
        labels = [y for _, y in map(self.split, SPLITS) if y is not None]
        return int(max(int(y.max()) for y in labels if len(y)) + 1)
