"""The `unnormalized_inputs` warning: a job that trains on raw inputs (`dataset.normalize:
none`) whose features' spreads are orders of magnitude apart. The widest feature then
dominates the first layer's sums and gradients: one lesson's run with spreads 1,700x apart
had an epoch-1 loss of 1e21 and "succeeded" at chance.

Judged from each feature's standard deviation over the training data: an uploaded dataset's
stored summary (core/dataset_summary.py, listed per feature up to MAX_LISTED_FEATURES), a
built-in one computed from its generated arrays. Only flat inputs (one axis of features) are
judged: an image's or a signal's values share one unit by construction, and a border pixel
that is almost always blank is not a badly scaled feature."""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from core import datasets
from core.dataset_summary import feature_stats
from core.named_warning import NamedWarning
from core.specs.dataset import DatasetSpec

# Largest over smallest non-zero feature standard deviation at which raw inputs are flagged:
# two orders of magnitude (a feature in metres beside one in kilometres is only 1,000x).
SPREAD_RATIO_WARNING = 100.0
# Spreads at most this are constant features: standardize maps them to 0, and they carry no
# scale to compare.
CONSTANT_STD = 1e-12

Lookup = Callable[[str | uuid.UUID], Mapping[str, Any] | None]


def unnormalized_inputs(spec: DatasetSpec, info: datasets.DatasetInfo,
                        lookup: Lookup | None) -> NamedWarning | None:
    """The warning, or None: normalisation is on, the inputs are not flat, the per-feature
    spreads are unknown (an upload of more than MAX_LISTED_FEATURES features) or close."""
    if spec.normalize != "none" or len(info.input_shape) != 1:
        return None
    spreads = _spreads(spec, lookup)
    if spreads is None:
        return None
    stds = np.asarray(spreads, dtype=np.float64)
    varying = np.flatnonzero(stds > CONSTANT_STD)
    if len(varying) < 2:
        return None
    low = varying[np.argmin(stds[varying])]
    high = varying[np.argmax(stds[varying])]
    ratio = stds[high] / stds[low]
    if ratio < SPREAD_RATIO_WARNING:
        return None
    return NamedWarning(
        name="unnormalized_inputs",
        field="dataset.normalize",
        message=(
            f"dataset.normalize is none and the spreads of the features of {info.name} are "
            f"{ratio:,.0f}x apart (standard deviation {stds[low]:.3g} for feature {low}, "
            f"{stds[high]:.3g} for feature {high}; warned from {SPREAD_RATIO_WARNING:g}x): the "
            "widest feature dominates the first layer's sums and gradients, which slows "
            "training or makes it diverge; set dataset.normalize to standardize"
        ),
        suggestion="dataset.normalize: standardize",
    )


def _spreads(spec: DatasetSpec, lookup: Lookup | None) -> list[float] | None:
    if spec.is_builtin:
        return list(_builtin_spreads(spec.name, spec.options()))
    found = None
    if lookup is not None:
        found = lookup(spec.id if spec.id is not None else spec.name)
    per_feature = ((found or {}).get("feature_stats") or {}).get("per_feature")
    return None if per_feature is None else per_feature["std"]


# Samples a synthetic built-in set is generated with to estimate its spreads: a standard
# deviation from 10,000 draws is within about 1% of the full set's, at a hundredth of the cost
# of a million-sample set (measured: 625 ms for spirals with n_samples 1,000,000).
SPREAD_SAMPLES = 10_000


def _builtin_spreads(name: str, options: datasets.Options) -> tuple[float, ...]:
    builtin = datasets.BUILTINS[name]
    if "n_samples" in builtin.tunable:
        options = dataclasses.replace(
            options, n_samples=min(builtin.n_samples(options), SPREAD_SAMPLES))
    return _generated_spreads(name, options)


@functools.lru_cache(maxsize=64)
def _generated_spreads(name: str, options: datasets.Options) -> tuple[float, ...]:
    """Asked only of jobs without normalisation, and cached: a sweep asks again and again
    with the same options."""
    stats = feature_stats(datasets.load(name, options).x_train)
    return tuple(stats["per_feature"]["std"]) if stats["per_feature"] else ()
