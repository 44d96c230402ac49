"""Checks every format shares: class labels, regression targets, and the splits of a
Parsed agreeing with each other. `field` names what the user should change."""

from __future__ import annotations

import numpy as np

from core.uploads.parsed import SPLITS, Parsed, UploadError

MAX_CLASSES = 10_000


def classification_labels(y: np.ndarray, field: str, notes: list[str]) -> np.ndarray:
    """(n,) int64 labels from integers, or from floats that are all integral (noted)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise UploadError(field, f"has shape {tuple(y.shape)}; classification labels are one "
                          "integer per example, shape (n,) (for one-hot rows use argmax)")
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        if not finite.all():
            raise UploadError(field, f"has {int((~finite).sum())} NaN or infinite labels; "
                              "labels are integers 0..C-1")
        fractional = y != np.round(y)
        if fractional.any():
            at = int(np.argmax(fractional))
            raise UploadError(field, f"has non-integer labels such as {y[at]!r} (index {at}); "
                              "a classifier needs integer labels 0..C-1 (or use regression)")
        notes.append(f"{field}: float labels are all whole numbers; read as integers")
    elif y.dtype.kind not in "biu":
        raise UploadError(field, f"has dtype {y.dtype}; labels are integers 0..C-1")
    if len(y) and y.min() < 0:
        at = int(np.argmin(y))
        raise UploadError(field, f"has a negative label {int(y[at])} (index {at}); labels are "
                          "integers 0..C-1")
    if len(y) and y.max() >= MAX_CLASSES:
        raise UploadError(field, f"has a label {int(y.max())}: more than {MAX_CLASSES:,} "
                          "classes; labels are integers 0..C-1 (for a quantity, use "
                          "task=regression)")
    return y.astype(np.int64, copy=False)


def regression_targets(y: np.ndarray, field: str) -> np.ndarray:
    """(n, k) float32 targets, all finite."""
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise UploadError(field, f"has shape {tuple(y.shape)}; regression targets are (n,) or "
                          "(n, k)")
    if y.dtype.kind not in "biuf":
        raise UploadError(field, f"has dtype {y.dtype}; regression targets are numbers")
    with np.errstate(over="ignore"):
        y = y.astype(np.float32, copy=False)
    bad = ~np.isfinite(y)
    if bad.any():
        raise UploadError(field, f"has {int(bad.sum())} NaN or infinite values (or values "
                          "beyond float32's range); remove or fill them")
    return y


def check_splits(parsed: Parsed, field_of: dict[str, str] | None = None) -> Parsed:
    """Each split non-empty with as many targets as features; the same feature shape in
    every split; at least two classes, none of them only outside the training split."""
    field_of = field_of or {}
    shape = parsed.x_train.shape[1:]
    for name in SPLITS:
        x, y = parsed.split(name)
        if x is None and y is None:
            continue
        field = field_of.get(name, f"file: {name}")
        if x is None or y is None:
            raise UploadError(field, f"has {'y' if x is None else 'x'}_{name} without "
                              f"{'x' if x is None else 'y'}_{name}; give both or neither")
        if len(x) == 0:
            raise UploadError(field, f"the {name} split is empty; give it examples or leave "
                              "it out")
        if len(x) != len(y):
            raise UploadError(field, f"x_{name} has {len(x):,} examples but y_{name} has "
                              f"{len(y):,}; they must match one to one")
        if x.shape[1:] != shape:
            raise UploadError(field, f"x_{name} examples have shape {tuple(x.shape[1:])} but "
                              f"x_train's are {tuple(shape)}; every split needs the same shape")
        if parsed.task == "regression" and y.shape[1:] != parsed.y_train.shape[1:]:
            raise UploadError(field, f"y_{name} targets have shape {tuple(y.shape[1:])} but "
                              f"y_train's are {tuple(parsed.y_train.shape[1:])}")
    check_names(parsed)
    if parsed.task == "classification":
        count = parsed.num_classes or 0
        if count < 2:
            raise UploadError(field_of.get("train", "file: y_train"), "has a single class; a "
                              "classifier needs at least two")
        if count > MAX_CLASSES:
            raise UploadError(field_of.get("train", "file: y_train"), f"has {count:,} "
                              f"classes, more than {MAX_CLASSES:,}")
        seen = np.bincount(parsed.y_train, minlength=count)
        absent = [int(c) for c in np.flatnonzero(seen == 0)]
        if absent:
            names = [parsed.class_names[c] if parsed.class_names else str(c) for c in absent]
            parsed.notes.append(f"{len(absent)} class(es) have no training examples: "
                                f"{', '.join(names[:10])}{' ...' if len(names) > 10 else ''}")
    return parsed


def check_names(parsed: Parsed) -> None:
    """Names, where given, as many as what they name: one class name per class label (every
    label below their count) and one feature name per input feature."""
    if parsed.class_names is not None:
        if parsed.task != "classification":
            raise UploadError("file: class_names", "are given for a regression dataset; leave "
                              "them out, or upload class labels (task=classification)")
        top = max(int(y.max()) for _, y in map(parsed.split, SPLITS) if y is not None and len(y))
        if top >= len(parsed.class_names):
            raise UploadError("file: class_names", f"names {len(parsed.class_names)} classes "
                              f"but the labels go up to {top}; give one name per class, "
                              f"{top + 1} in label order")
    if parsed.feature_names is not None:
        features = int(np.prod(parsed.input_shape))
        if len(parsed.feature_names) != features:
            raise UploadError("file: feature_names", f"has {len(parsed.feature_names)} names "
                              f"but each example has {features} features "
                              f"(x_train {tuple(parsed.input_shape)}); give one name per "
                              "feature, in column order")
