"""The test split's evaluation at the end of training, stored with the job (`job.evaluation`)
and drawn on its page: what a single accuracy or rmse does not say.

- classification: the confusion matrix (counts; rows the true class, columns the predicted
  one) and per-class precision, recall, F1 and support, with the classes' names;
- multi-label: per-label precision, recall, F1 and support (a label's positives);
- regression: residual statistics over the whole split and a deterministic sample of
  (true, predicted) pairs, for a scatter plot.

The size is bounded whatever the dataset: the matrix is kept up to MAX_MATRIX_CLASSES
classes (the largest confusions always), the pairs up to MAX_PAIRS per output for the first
MAX_OUTPUTS outputs. Values are rounded to SIGNIFICANT digits: they are for reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.evaluate import EVAL_BATCH, predicted_class

MAX_MATRIX_CLASSES = 100  # 10,000 counts: a few tens of kB of JSON
TOP_CONFUSIONS = 20
MAX_PAIRS = 500
MAX_OUTPUTS = 4
SIGNIFICANT = 6


@torch.no_grad()
def evaluation_report(model: nn.Module, x, y: torch.Tensor, task: str,
                class_names: Sequence[str] | None = None, num_classes: int | None = None,
                batch_size: int | None = None) -> dict[str, Any]:
    """The evaluation of `model` on the split (x, y) as stored in `job.evaluation`. `x` is
    what the loop evaluates (normalised, on the model's device, or StreamedInputs)."""
    model.eval()
    batch = batch_size or EVAL_BATCH
    outputs = [model(x[start:start + batch]) for start in range(0, len(x), batch)]
    out = torch.cat(outputs) if outputs else torch.empty(0)
    if task == "classification":
        return classification_report(predicted_class(out).cpu().numpy(), y.cpu().numpy(),
                                     class_names, max(num_classes or 0, out.shape[1]))
    if task == "multilabel":
        return multilabel_report((out > 0).cpu().numpy(), y.cpu().numpy() > 0.5, class_names)
    return regression_report(out.float().cpu().numpy(), y.float().cpu().numpy())


def classification_report(predicted: np.ndarray, true: np.ndarray,
                          class_names: Sequence[str] | None, num_classes: int
                          ) -> dict[str, Any]:
    n_classes = max(num_classes, int(true.max(initial=-1)) + 1,
                    int(predicted.max(initial=-1)) + 1, 2)
    names = _names(class_names, n_classes)
    matrix = np.bincount(true.astype(np.int64) * n_classes + predicted.astype(np.int64),
                         minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    hits = np.diag(matrix)
    support, predicted_count = matrix.sum(axis=1), matrix.sum(axis=0)
    precision = _ratio(hits, predicted_count)
    recall = _ratio(hits, support)
    per_class = [
        {"name": names[c], "precision": precision[c], "recall": recall[c],
         "f1": _f1(precision[c], recall[c]), "support": int(support[c]),
         "predicted": int(predicted_count[c])}
        for c in range(n_classes)
    ]
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:TOP_CONFUSIONS]
    confusions = [{"true": names[i], "predicted": names[j], "count": int(off[i, j])}
                  for i, j in zip(*np.unravel_index(order, off.shape), strict=True)
                  if off[i, j] > 0]
    total = int(matrix.sum())
    return {
        "task": "classification",
        "split": "test",
        "samples": total,
        "accuracy": _round(hits.sum() / total) if total else None,
        "class_names": names,
        "matrix": matrix.tolist() if n_classes <= MAX_MATRIX_CLASSES else None,
        "per_class": per_class,
        "macro": _macro(per_class),
        "top_confusions": confusions,
    }


def multilabel_report(predicted: np.ndarray, true: np.ndarray,
                      class_names: Sequence[str] | None) -> dict[str, Any]:
    n_labels = true.shape[1]
    names = _names(class_names, n_labels)
    hits = (predicted & true).sum(axis=0)
    support, predicted_count = true.sum(axis=0), predicted.sum(axis=0)
    precision = _ratio(hits, predicted_count)
    recall = _ratio(hits, support)
    per_label = [
        {"name": names[k], "precision": precision[k], "recall": recall[k],
         "f1": _f1(precision[k], recall[k]), "support": int(support[k]),
         "predicted": int(predicted_count[k])}
        for k in range(n_labels)
    ]
    return {"task": "multilabel", "split": "test", "samples": int(len(true)),
            "label_names": names, "per_label": per_label, "macro": _macro(per_label)}


def regression_report(predicted: np.ndarray, true: np.ndarray) -> dict[str, Any]:
    predicted = predicted.reshape(len(predicted), -1)
    true = true.reshape(len(true), -1)
    n, k = true.shape
    rows = sample_rows(n, MAX_PAIRS)
    outputs = []
    for j in range(min(k, MAX_OUTPUTS)):
        residual = predicted[:, j] - true[:, j]
        absolute = np.abs(residual)
        outputs.append({
            "name": "y" if k == 1 else f"y{j}",
            "residual": {
                "mean": _round(residual.mean()), "std": _round(residual.std()),
                "min": _round(residual.min()), "max": _round(residual.max()),
                "mae": _round(absolute.mean()), "rmse": _round(np.sqrt(np.mean(residual ** 2))),
                "abs_p50": _round(np.quantile(absolute, 0.5)),
                "abs_p90": _round(np.quantile(absolute, 0.9)),
            },
            "true": [_round(v) for v in true[rows, j]],
            "predicted": [_round(v) for v in predicted[rows, j]],
        })
    return {"task": "regression", "split": "test", "samples": int(n), "outputs_total": int(k),
            "sampled": len(rows), "outputs": outputs}


def sample_rows(n: int, limit: int) -> np.ndarray:
    """Up to `limit` of range(n), evenly spaced: the same rows every time for the same split
    (the split's own order is already a random draw)."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def _names(class_names: Sequence[str] | None, count: int) -> list[str]:
    names = list(class_names or [])[:count]
    return names + [str(c) for c in range(len(names), count)]


def _ratio(part: np.ndarray, whole: np.ndarray) -> list[float | None]:
    """part / whole per class; None where whole is 0 (no sample, or no prediction, of it)."""
    return [None if w == 0 else _round(p / w) for p, w in zip(part, whole, strict=True)]


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    if precision + recall == 0:
        return 0.0
    return _round(2 * precision * recall / (precision + recall))


def _macro(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The unweighted mean of each metric over the classes where it is defined."""
    macro: dict[str, float | None] = {}
    for metric in ("precision", "recall", "f1"):
        values = [row[metric] for row in rows if row[metric] is not None]
        macro[metric] = _round(np.mean(values)) if values else None
    return macro


def _round(value: float) -> float:
    return float(f"{float(value):.{SIGNIFICANT}g}")
