"""What the API says about an uploaded dataset besides its shapes: class counts per split,
and a mean/std summary of the training features.

Computed in a stream of flat chunks with a few scalars of state, so that its memory does not
grow with the number of features (a 9000x9000 image has 243 million of them) nor with the
number of samples. Per-feature numbers are kept only for inputs of at most
MAX_LISTED_FEATURES features, where they cost nothing."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.array_chunks import flat_chunks, row_blocks
from core.uploads.parsed import SPLITS, Parsed

# Per-feature numbers are listed up to this many features; an image's 784 or 150 528 pixel
# means would drown the answer, so wider inputs get the overall summary only.
MAX_LISTED_FEATURES = 64
# a float64 copy of a chunk is made twice over; 4 MiB of float32 keeps that near 20 MiB.
CHUNK_BYTES = 4 * 1024 * 1024


def class_counts(parsed: Parsed) -> dict[str, list[int]] | None:
    """Samples per class, per split that exists; None for regression."""
    if parsed.task != "classification":
        return None
    classes = parsed.num_classes or 0
    counts = {}
    for name in SPLITS:
        y = parsed.split(name)[1]
        if y is not None:
            counts[name] = np.bincount(np.asarray(y).reshape(-1), minlength=classes).tolist()
    return counts


class _Moments:
    """count, mean and sum of squared deviations, merged chunk by chunk with Chan et al.'s
    pairwise update: exact, and stable where a sum of squares is not. Works elementwise on
    arrays of any shape (per feature) as well as on scalars (overall)."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.count = 0
        self.mean = np.zeros(shape)
        self.m2 = np.zeros(shape)

    def add(self, values: np.ndarray, axis: int | None = None) -> None:
        b_count = values.size if axis is None else values.shape[axis]
        if b_count == 0:
            return
        b_mean = values.mean(axis=axis)
        b_m2 = ((values - (b_mean if axis is None else np.expand_dims(b_mean, axis))) ** 2
                ).sum(axis=axis)
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * (b_count / total)
        self.m2 = self.m2 + b_m2 + delta**2 * (self.count * b_count / total)
        self.count = total


def feature_stats(x: np.ndarray) -> dict[str, Any]:
    """Overall min/max/mean/std of the features of `x` (n, *input_shape), and the mean and
    std of each feature when there are at most MAX_LISTED_FEATURES of them."""
    n = len(x)
    width = int(np.prod(x.shape[1:], dtype=np.int64))
    if n == 0 or width == 0:
        return {"features": width, "min": None, "max": None, "mean": None, "std": None,
                "per_feature": None}
    overall = _Moments()
    low, high = np.inf, -np.inf
    for chunk in flat_chunks(x, CHUNK_BYTES):
        values = chunk.astype(np.float64)
        overall.add(values)
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    per_feature = None
    if width <= MAX_LISTED_FEATURES:
        moments = _Moments((width,))
        for block in row_blocks(x, CHUNK_BYTES):
            moments.add(block.reshape(len(block), width).astype(np.float64), axis=0)
        per_feature = {"mean": moments.mean.round(6).tolist(),
                       "std": np.sqrt(moments.m2 / moments.count).round(6).tolist()}
    return {
        "features": width,
        "min": low,
        "max": high,
        "mean": float(overall.mean),
        "std": float(np.sqrt(overall.m2 / overall.count)),
        "per_feature": per_feature,
    }
