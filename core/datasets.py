"""Built-in datasets: generated from a seed or shipped inside a package, never downloaded.

`describe` answers shape questions cheaply (the API validates specs with it); `load` makes
the arrays (the worker trains on them). The test split is cut with a fixed seed, whatever
the dataset's seed, so that for the same data test accuracy means the same thing across jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

# classification: one integer class label per sample; multilabel: L independent 0/1 labels
# per sample, as floats (n, L); regression: float targets (n, 1).
Task = Literal["classification", "multilabel", "regression"]
TEST_FRACTION = 0.2
TEST_SPLIT_SEED = 0


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: Task
    input_shape: tuple[int, ...]
    num_classes: int | None  # classification only
    target_shape: tuple[int, ...]  # () for class labels, (L,) for multilabel
    n_samples: int
    description: str

    @property
    def n_test(self) -> int:
        return int(round(self.n_samples * TEST_FRACTION))


@dataclass(frozen=True)
class Arrays:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Options:
    """Generation options; None means the dataset's default."""

    n_samples: int | None = None
    noise: float | None = None
    classes: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class Builtin:
    description: str
    task: Task
    generate: Callable[[Options], tuple[np.ndarray, np.ndarray]]
    input_shape: Callable[[Options], tuple[int, ...]]
    num_classes: Callable[[Options], int | None]
    n_samples: Callable[[Options], int]
    tunable: frozenset[str]  # which Options fields apply
    target_shape: tuple[int, ...] = ()  # per sample: () for class labels


def _digits(opts: Options) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # ships inside the scikit-learn wheel

    bunch = load_digits()
    x = bunch.data.astype(np.float32).reshape(-1, 1, 8, 8)
    return x, bunch.target.astype(np.int64)


def _spirals(opts: Options) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(opts.seed)
    n, k = _n(opts, 1500), opts.classes or 3
    noise = 0.2 if opts.noise is None else opts.noise
    labels = np.arange(n) % k
    radius = rng.uniform(0.05, 1.0, n)
    theta = labels * (2 * np.pi / k) + radius * 4.0 + rng.normal(0.0, noise, n)
    x = np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1)
    return x.astype(np.float32), labels.astype(np.int64)


def _moons(opts: Options) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons

    x, y = make_moons(_n(opts, 1000), noise=0.1 if opts.noise is None else opts.noise,
                      random_state=opts.seed)
    return x.astype(np.float32), y.astype(np.int64)


def _blobs(opts: Options) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_blobs

    x, y = make_blobs(_n(opts, 1000), n_features=2, centers=opts.classes or 3,
                      cluster_std=1.0 if opts.noise is None else opts.noise,
                      random_state=opts.seed)
    return x.astype(np.float32), y.astype(np.int64)


def _sine(opts: Options) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(opts.seed)
    n = _n(opts, 1000)
    x = rng.uniform(-np.pi, np.pi, (n, 1))
    y = np.sin(x) + rng.normal(0.0, 0.1 if opts.noise is None else opts.noise, (n, 1))
    return x.astype(np.float32), y.astype(np.float32)


ZONE_LABELS = 4


def _zones(opts: Options) -> tuple[np.ndarray, np.ndarray]:
    """Points in the square [-1, 1]^2, each with ZONE_LABELS independent labels: right of the
    y axis, above a slanted line, inside a ring around the origin, inside a disc off-centre.
    Noise jitters the point a label is decided on, so labels near a boundary may flip."""
    rng = np.random.default_rng(opts.seed)
    n = _n(opts, 1000)
    x = rng.uniform(-1.0, 1.0, (n, 2))
    p = x + rng.normal(0.0, 0.05 if opts.noise is None else opts.noise, (n, 2))
    radius = np.hypot(p[:, 0], p[:, 1])
    labels = np.stack([
        p[:, 0] > 0.0,
        p[:, 1] > 0.5 * p[:, 0] + 0.2,
        (radius > 0.35) & (radius < 0.75),
        np.hypot(p[:, 0] - 0.5, p[:, 1] + 0.5) < 0.45,
    ], axis=1)
    return x.astype(np.float32), labels.astype(np.float32)


def _n(opts: Options, default: int) -> int:
    return opts.n_samples or default


BUILTINS: dict[str, Builtin] = {
    "digits": Builtin(
        "8x8 handwritten digits (scikit-learn's copy of the UCI set), 1797 images, 10 classes",
        "classification", _digits, lambda o: (1, 8, 8), lambda o: 10, lambda o: 1797,
        frozenset(),
    ),
    "spirals": Builtin(
        "interleaved 2-D spirals, one arm per class (default 3 classes, 1500 points)",
        "classification", _spirals, lambda o: (2,), lambda o: o.classes or 3,
        lambda o: _n(o, 1500), frozenset({"n_samples", "noise", "classes"}),
    ),
    "moons": Builtin(
        "two interleaved half-circles in 2-D (1000 points)",
        "classification", _moons, lambda o: (2,), lambda o: 2, lambda o: _n(o, 1000),
        frozenset({"n_samples", "noise"}),
    ),
    "blobs": Builtin(
        "Gaussian clusters in 2-D, one per class (default 3 classes, 1000 points)",
        "classification", _blobs, lambda o: (2,), lambda o: o.classes or 3,
        lambda o: _n(o, 1000), frozenset({"n_samples", "noise", "classes"}),
    ),
    "sine": Builtin(
        "y = sin(x) + noise on [-pi, pi] (regression, 1000 points)",
        "regression", _sine, lambda o: (1,), lambda o: None, lambda o: _n(o, 1000),
        frozenset({"n_samples", "noise"}), target_shape=(1,),
    ),
    "zones": Builtin(
        f"2-D points with {ZONE_LABELS} independent 0/1 labels (multi-label): right of the "
        "y axis, above a slanted line, in a ring, in a disc (1000 points)",
        "multilabel", _zones, lambda o: (2,), lambda o: None, lambda o: _n(o, 1000),
        frozenset({"n_samples", "noise"}), target_shape=(ZONE_LABELS,),
    ),
}


def describe(name: str, opts: Options | None = None) -> DatasetInfo:
    opts = opts or Options()
    builtin = BUILTINS[name]
    return DatasetInfo(
        name=name,
        task=builtin.task,
        input_shape=builtin.input_shape(opts),
        num_classes=builtin.num_classes(opts),
        target_shape=builtin.target_shape,
        n_samples=builtin.n_samples(opts),
        description=builtin.description,
    )


def load(name: str, opts: Options | None = None) -> Arrays:
    """Generate the dataset and cut its fixed test split (stratified by class labels; a
    multi-label or regression set is split at random)."""
    opts = opts or Options()
    builtin = BUILTINS[name]
    x, y = builtin.generate(opts)
    stratify = y if builtin.task == "classification" else None
    train_idx, test_idx = split_indices(len(x), TEST_FRACTION, TEST_SPLIT_SEED, stratify)
    return Arrays(x[train_idx], y[train_idx], x[test_idx], y[test_idx])


def split_indices(
    n: int, fraction: float, seed: int, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split range(n) into (kept, held_out) with `fraction` held out, stratified by `labels`
    (one class label per sample; pass None for multi-label and regression targets)."""
    if labels is not None and labels.ndim != 1:
        # np.unique would flatten (n, L) 0/1 targets into two bogus "classes" of labels.
        raise ValueError(f"stratify by class labels of shape (n,), not {labels.shape}")
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(n)
        cut = int(round(n * fraction))
        return np.sort(order[cut:]), np.sort(order[:cut])
    held: list[np.ndarray] = []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        held.append(members[: int(round(len(members) * fraction))])
    held_out = np.sort(np.concatenate(held))
    kept = np.setdiff1d(np.arange(n), held_out, assume_unique=True)
    return kept, held_out
