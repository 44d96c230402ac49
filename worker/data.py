"""Dataset -> the splits the loop trains on: validation split, input normalisation, and
where the inputs live: on the device as tensors when they fit (settings.device_data_mb),
else memory-mapped on the host and streamed in batches (worker/streamed.py). Both give the
network the same float32 values."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core import dataset_store, datasets
from core.jobspec import JobSpec
from worker.streamed import StreamedInputs

STATS_CHUNK_ROWS = 8192  # rows read at a time when computing normalisation statistics


@dataclass
class TrainData:
    """The loop indexes these: tensors on the device, or for inputs too large for it,
    StreamedInputs (which index like them). Targets are always tensors on the device."""

    task: str
    x_train: torch.Tensor | StreamedInputs
    y_train: torch.Tensor
    x_val: torch.Tensor | StreamedInputs | None
    y_val: torch.Tensor | None
    x_test: torch.Tensor | StreamedInputs | None
    y_test: torch.Tensor | None
    # Per-feature statistics of the training split, saved in checkpoints as they are:
    # {"mean", "std"} (standardize), {"min", "max"} (minmax) or {} (none); see normalize_inputs.
    normalization: dict[str, torch.Tensor]
    num_classes: int | None = None  # classification only
    streamed: bool = False
    class_names: tuple[str, ...] | None = None  # the dataset's, for the test report

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _chunks(x: np.ndarray, rows: np.ndarray | None) -> Iterator[np.ndarray]:
    """The rows of x, a chunk at a time in float64: a memory-mapped split is never read whole,
    and the sums do not depend on whether it is (the in-memory path uses the same chunks)."""
    n = len(x) if rows is None else len(rows)
    for start in range(0, n, STATS_CHUNK_ROWS):
        part = x[start:start + STATS_CHUNK_ROWS] if rows is None else x[
            rows[start:start + STATS_CHUNK_ROWS]]
        yield np.asarray(part, dtype=np.float64)


def standardize_stats(x_train: np.ndarray, rows: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std of the training split (rows `rows` of x_train), accumulated
    in float64 over two passes. Constant features (a digit image's always-blank border) get
    std 1 so they map to zero rather than to NaN."""
    n = len(x_train) if rows is None else len(rows)
    total = np.zeros(x_train.shape[1:], dtype=np.float64)
    for chunk in _chunks(x_train, rows):
        total += chunk.sum(axis=0)
    mean = total / n
    squares = np.zeros_like(mean)
    for chunk in _chunks(x_train, rows):
        squares += np.square(chunk - mean).sum(axis=0)
    std = np.sqrt(squares / n)
    std = np.where(std < 1e-6, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def minmax_stats(x_train: np.ndarray, rows: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature minimum and maximum of the training split (rows `rows` of x_train)."""
    low = high = None
    for chunk in _chunks(x_train, rows):
        small, large = chunk.min(axis=0), chunk.max(axis=0)
        low = small if low is None else np.minimum(low, small)
        high = large if high is None else np.maximum(high, large)
    return low.astype(np.float32), high.astype(np.float32)


def normalization_stats(x_train: np.ndarray, kind: str, rows: np.ndarray | None = None
                        ) -> dict[str, torch.Tensor]:
    """The statistics `dataset.normalize` asks for, from the training split's inputs."""
    if kind == "standardize":
        mean, std = standardize_stats(x_train, rows)
        return {"mean": torch.from_numpy(mean), "std": torch.from_numpy(std)}
    if kind == "minmax":
        low, high = minmax_stats(x_train, rows)
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


def _split_rows(n_rows: int, rows: np.ndarray | None) -> int:
    return n_rows if rows is None else len(rows)


def float32_bytes(arrays: datasets.JobArrays) -> int:
    """What the splits take as float32 inputs and as targets once on the device."""
    total = 0
    for split in ("train", "val", "test"):
        x, y = getattr(arrays, f"x_{split}"), getattr(arrays, f"y_{split}")
        if x is None:
            continue
        n = _split_rows(len(x), getattr(arrays, f"{split}_rows"))
        total += n * (int(np.prod(x.shape[1:])) * 4 + int(np.prod(y.shape[1:])) * y.itemsize)
    return total


def prepare_data(spec: JobSpec, device: torch.device, datasets_root: Path | None = None,
                 device_data_mb: float = 1024) -> TrainData:
    """The job's splits on `device`. An uploaded dataset (spec.dataset.sha256, filled in when
    the job was validated) is read from `datasets_root`/<sha256>/. Inputs whose float32
    splits exceed `device_data_mb` stay memory-mapped and are streamed (0 streams always)."""
    ds = spec.dataset
    if ds.is_builtin:
        info = datasets.describe(ds.name, ds.options())
    else:
        if ds.sha256 is None or datasets_root is None:
            raise ValueError("an uploaded dataset needs its sha256 (validate_job fills it in) "
                             "and the datasets folder")
        info = datasets.describe_stored(
            {**dataset_store.read_meta(datasets_root, ds.sha256), "sha256": ds.sha256,
             "name": ds.name})
    stored = datasets.source_arrays(ds.name, ds.options(), None if ds.is_builtin else ds.sha256,
                                    datasets_root)
    arrays = datasets.job_arrays(stored, info.task, ds.val_fraction, ds.seed, ds.n_train)
    normalization = normalization_stats(arrays.x_train, ds.normalize, arrays.train_rows)
    streamed = float32_bytes(arrays) > device_data_mb * 2**20

    def normalize(x: torch.Tensor) -> torch.Tensor:
        return normalize_inputs(x, normalization)

    def inputs(x: np.ndarray | None, rows: np.ndarray | None
               ) -> torch.Tensor | StreamedInputs | None:
        if x is None or _split_rows(len(x), rows) == 0:
            return None
        if streamed:
            return StreamedInputs(x, rows, normalize, device)
        picked = x if rows is None else x[rows]
        return normalize(torch.from_numpy(np.array(picked, dtype=np.float32))).to(device)

    def targets(y: np.ndarray | None, rows: np.ndarray | None) -> torch.Tensor | None:
        if y is None or _split_rows(len(y), rows) == 0:
            return None
        return torch.from_numpy(np.array(y if rows is None else y[rows])).to(device)

    return TrainData(
        task=info.task,
        x_train=inputs(arrays.x_train, arrays.train_rows),
        y_train=targets(arrays.y_train, arrays.train_rows),
        x_val=inputs(arrays.x_val, arrays.val_rows),
        y_val=targets(arrays.y_val, arrays.val_rows),
        x_test=inputs(arrays.x_test, arrays.test_rows),
        y_test=targets(arrays.y_test, arrays.test_rows),
        normalization=normalization,
        num_classes=info.num_classes,
        streamed=streamed,
        class_names=info.class_names,
    )
