"""What the API says about an uploaded dataset besides its shapes: class counts per split,
and a mean/std summary of the training features (computed in blocks, so a dataset larger
than memory can be summarized)."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.array_chunks import row_blocks
from core.uploads.parsed import SPLITS, Parsed

# Per-feature numbers are listed up to this many features; an image's 784 or 150 528 pixel
# means would drown the answer, so wider inputs get the overall summary only.
MAX_LISTED_FEATURES = 64
# float64 copies of a block are made three times over; 8 MiB keeps that near 50 MiB.
BLOCK_BYTES = 8 * 1024 * 1024


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


def feature_stats(x: np.ndarray) -> dict[str, Any]:
    """Overall min/max/mean/std of the features of `x` (n, *input_shape), and the mean and
    std of each feature when there are at most MAX_LISTED_FEATURES of them."""
    n = len(x)
    width = int(np.prod(x.shape[1:], dtype=np.int64))
    count = 0
    mean = np.zeros(width)
    m2 = np.zeros(width)  # sum of squared deviations from the mean, per feature
    low, high = np.inf, -np.inf
    for block in row_blocks(x, BLOCK_BYTES):
        values = block.reshape(len(block), width).astype(np.float64)
        # Chan et al.'s pairwise update: exact, and stable where sum of squares is not.
        b_count = len(values)
        b_mean = values.mean(axis=0)
        b_m2 = ((values - b_mean) ** 2).sum(axis=0)
        delta = b_mean - mean
        total = count + b_count
        mean = mean + delta * (b_count / total)
        m2 = m2 + b_m2 + delta**2 * (count * b_count / total)
        count = total
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    if n == 0 or width == 0:
        return {"features": width, "min": None, "max": None, "mean": None, "std": None,
                "per_feature": None}
    overall_mean = float(mean.mean())
    # every value's squared deviation from the overall mean, summed over the features
    overall_m2 = float((m2 + count * (mean - overall_mean) ** 2).sum())
    std = np.sqrt(m2 / count)
    return {
        "features": width,
        "min": low,
        "max": high,
        "mean": overall_mean,
        "std": float(np.sqrt(overall_m2 / (count * width))),
        "per_feature": (
            {"mean": mean.round(6).tolist(), "std": std.round(6).tolist()}
            if width <= MAX_LISTED_FEATURES else None
        ),
    }
