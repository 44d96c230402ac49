"""Datasets a job trains on: built-in ones, generated from a seed or shipped inside a
package, never downloaded; and uploaded ones, stored by core/dataset_store.py.

`describe` and `describe_stored` answer shape questions cheaply (the API validates specs with
them); `load` and `job_arrays` make the arrays (the worker trains on them). The test split is
cut with a fixed seed, whatever the dataset's seed, so that for the same data test accuracy
means the same thing across jobs; an uploaded dataset's own validation and test splits are
used as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core import dataset_store

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
    n_samples: int  # every split together
    description: str
    # Uploaded datasets only: the row's id, the stored version, and the sizes of the dataset's
    # own validation and test splits (None: cut from its training split).
    id: str | None = None
    sha256: str | None = None
    # Each class's name in label order (a multi-label set's: each label's; integer labels
    # without names: "0".."k-1"); each input feature's name in column order. None where
    # unknown: regression classes, images' features, an upload's unnamed arrays or one stored
    # before names were kept.
    class_names: tuple[str, ...] | None = None
    val_samples: int | None = None
    test_samples: int | None = None
    feature_names: tuple[str, ...] | None = None

    @property
    def builtin(self) -> bool:
        return self.sha256 is None

    @property
    def n_test(self) -> int:
        if self.test_samples is not None:
            return self.test_samples
        return int(round((self.n_samples - (self.val_samples or 0)) * TEST_FRACTION))


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


ZONE_LABEL_NAMES = ("right", "above_line", "ring", "disc")
ZONE_LABELS = len(ZONE_LABEL_NAMES)


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
    input_shape = builtin.input_shape(opts)
    num_classes = builtin.num_classes(opts)
    return DatasetInfo(
        name=name,
        task=builtin.task,
        input_shape=input_shape,
        num_classes=num_classes,
        target_shape=builtin.target_shape,
        n_samples=builtin.n_samples(opts),
        description=builtin.description,
        class_names=_builtin_class_names(name, num_classes),
        feature_names=_builtin_feature_names(input_shape),
    )


def _builtin_class_names(name: str, num_classes: int | None) -> tuple[str, ...] | None:
    """Digits and the generated classes are named by their label ("0".."k-1"); the zones'
    labels by what each one marks."""
    if name == "zones":
        return ZONE_LABEL_NAMES
    return None if num_classes is None else tuple(str(c) for c in range(num_classes))


def _builtin_feature_names(input_shape: tuple[int, ...]) -> tuple[str, ...] | None:
    """"x" for one input, "x0", "x1", ... for a few coordinates; None for images."""
    if len(input_shape) != 1:
        return None
    if input_shape[0] == 1:
        return ("x",)
    return tuple(f"x{i}" for i in range(input_shape[0]))


def describe_stored(stored: Mapping[str, Any]) -> DatasetInfo:
    """An uploaded dataset's description from its meta.json (core/dataset_store.py) or its
    database row: task, input_shape, target_shape, num_classes, class_names, feature_names,
    splits, and the row's id, name and sha256 where known."""
    splits = stored["splits"]
    own = {name: splits.get(name) or None for name in ("val", "test")}  # 0 rows: none of its own
    sha256 = stored["sha256"]
    name = stored.get("name") or sha256[:12]
    sizes = ", ".join(f"{split} {splits[split]}" for split in ("train", "val", "test")
                      if splits.get(split))
    return DatasetInfo(
        name=name,
        task=stored["task"],
        input_shape=tuple(stored["input_shape"]),
        num_classes=stored.get("num_classes"),
        target_shape=tuple(stored["target_shape"]),
        n_samples=sum(n for n in splits.values() if n),
        description=f"uploaded {stored['task']} dataset ({sizes})",
        id=str(stored["id"]) if stored.get("id") is not None else None,
        sha256=sha256,
        class_names=_stored_class_names(stored),
        val_samples=own["val"],
        test_samples=own["test"],
        feature_names=(tuple(stored["feature_names"]) if stored.get("feature_names")
                       else None),
    )


def _stored_class_names(stored: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The upload's class names; for integer labels given without names, the labels' numbers
    ("0".."k-1", as the built-in sets), so that every classification job has names."""
    if stored.get("class_names"):
        return tuple(stored["class_names"])
    if stored["task"] == "classification" and stored.get("num_classes"):
        return tuple(str(c) for c in range(stored["num_classes"]))
    return None


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


# Mixed into the seed of the training subsample, so that its draw is not the validation
# split's permutation over again (both are drawn from dataset.seed).
SUBSAMPLE_STREAM = 1


def subsample(n: int, k: int, seed: int, labels: np.ndarray | None = None) -> np.ndarray:
    """k of range(n), sorted, drawn with `seed`. With class labels each class keeps its share
    to within a sample (a plain draw of 100 digits can leave one class with half its share):
    the samples are shuffled, each is keyed by its rank within its class over the class's
    size, and the k smallest keys are kept."""
    order = np.random.default_rng((seed, SUBSAMPLE_STREAM)).permutation(n)
    if labels is None:
        return np.sort(order[:k])
    _, classes = np.unique(labels[order], return_inverse=True)
    key = np.empty(n)
    for cls in range(classes.max() + 1):
        members = np.flatnonzero(classes == cls)
        key[members] = (np.arange(len(members)) + 0.5) / len(members)
    return np.sort(order[np.argsort(key, kind="stable")[:k]])


@dataclass(frozen=True)
class JobArrays:
    """A job's splits before normalisation: each split's array and the rows of it the split
    takes, in order (None: every row). The arrays may be memory-mapped: nothing is read until
    the rows are."""

    task: Task
    x_train: np.ndarray
    y_train: np.ndarray
    train_rows: np.ndarray | None
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    val_rows: np.ndarray | None
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    test_rows: np.ndarray | None


def source_arrays(name: str | None, opts: Options, sha256: str | None,
                  root: Path | None) -> dict[str, np.ndarray]:
    """The arrays a job's splits are cut from, by name (`x_train`, `y_train`, and `x_val`,
    `y_val`, `x_test`, `y_test` where the dataset has them). A built-in dataset is generated,
    its fixed test split already cut; an uploaded one (`sha256`) is memory-mapped from `root`,
    the datasets folder."""
    if sha256 is None:
        arrays = load(name or "", opts)
        return {"x_train": arrays.x_train, "y_train": arrays.y_train,
                "x_test": arrays.x_test, "y_test": arrays.y_test}
    if root is None:
        raise ValueError("an uploaded dataset needs the datasets folder to load from")
    return dataset_store.load_arrays(root, sha256, mmap=True)


def job_arrays(stored: Mapping[str, np.ndarray], task: Task, val_fraction: float,
               seed: int, n_train: int | None = None) -> JobArrays:
    """Cut what the dataset lacks from its training array: first the fixed test split
    (TEST_FRACTION, TEST_SPLIT_SEED), then the validation split (val_fraction, `seed`), each
    stratified for classification, as the built-in datasets are cut; then keep `n_train` of
    the training rows (None: all), drawn with `seed`, so that a small training set is still
    validated and tested on the full splits. Only the labels are read."""
    x_train, y_train = stored["x_train"], stored["y_train"]
    labels = np.asarray(y_train) if task == "classification" else None
    rows = np.arange(len(x_train))
    test = None
    if "x_test" not in stored:
        rows, test = split_indices(len(rows), TEST_FRACTION, TEST_SPLIT_SEED, labels)
    val = None
    if "x_val" not in stored:
        kept, held = split_indices(len(rows), val_fraction, seed,
                                   None if labels is None else labels[rows])
        rows, val = rows[kept], rows[held]
    if n_train is not None and n_train < len(rows):
        rows = rows[subsample(len(rows), n_train, seed,
                              None if labels is None else labels[rows])]
    every_row = len(rows) == len(x_train)
    return JobArrays(
        task=task,
        x_train=x_train, y_train=y_train, train_rows=None if every_row else rows,
        x_val=stored.get("x_val", x_train if val is not None else None),
        y_val=stored.get("y_val", y_train if val is not None else None),
        val_rows=val,
        x_test=stored.get("x_test", x_train if test is not None else None),
        y_test=stored.get("y_test", y_train if test is not None else None),
        test_rows=test,
    )
