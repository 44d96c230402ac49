"""`dataset.augment`: random changes to each training batch, one class per augmentation type.

Augmentations act on the inputs after `dataset.normalize`, so a noise std is in normalised
units and a zero fill is the training mean (standardize) or minimum (minmax) of each
feature. Which inputs each one fits is checked against the dataset in core/jobspec.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from models.strict import StrictModel


class GaussianNoise(StrictModel):
    type: Literal["gaussian_noise"]
    std: float = Field(
        0.1, gt=0.0, le=10.0,
        description="standard deviation of the Gaussian noise added to every input value, "
        "in normalised units (after dataset.normalize); fits any input shape",
    )


class RandomShift(StrictModel):
    type: Literal["random_shift"]
    max_shift: int = Field(
        1, ge=1, le=1024,
        description="each sample moves by a whole number of positions drawn uniformly from "
        "-max_shift to max_shift: along L for signals (C, L), along H and W independently "
        "for images (C, H, W); vacated positions are filled with 0 (after normalisation: the "
        "feature's training mean with standardize, its minimum with minmax). Must be smaller "
        "than every shifted size",
    )


class RandomCrop(StrictModel):
    type: Literal["random_crop"]
    padding: int = Field(
        1, ge=1, le=1024,
        description="images (C, H, W) only: zero-pad every side by this much, then crop back "
        "to H x W at a random offset per sample. Must be smaller than H and W",
    )


class HorizontalFlip(StrictModel):
    type: Literal["horizontal_flip"]
    p: float = Field(
        0.5, gt=0.0, le=1.0,
        description="images (C, H, W) only: the chance that a sample is mirrored left to "
        "right (along W). Not offered for signals (C, L): reversing time changes what most "
        "signals mean",
    )


class Mixup(StrictModel):
    type: Literal["mixup"]
    alpha: float = Field(
        0.2, gt=0.0, le=100.0,
        description="each batch is blended with a shuffled copy of itself, "
        "x' = lam*x + (1-lam)*x[perm] with lam ~ Beta(alpha, alpha), and the targets alike: "
        "class labels become mixed one-hot probabilities (cross_entropy only), float targets "
        "are mixed as they are. Accuracy still counts the unmixed labels",
    )


AugmentSpec = Annotated[
    GaussianNoise | RandomShift | RandomCrop | HorizontalFlip | Mixup,
    Field(discriminator="type"),
]
