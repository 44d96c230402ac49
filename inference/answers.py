"""A model's outputs as the prediction answer: classes with names and probabilities, labels
for a multi-label model, values for regression."""

from __future__ import annotations

from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def names_for(count: int, class_names: list[str] | tuple[str, ...] | None) -> list[str]:
    if class_names is not None and len(class_names) == count:
        return [str(n) for n in class_names]
    return [str(i) for i in range(count)]


def predictions(out: np.ndarray, task: str, class_names: list[str] | tuple[str, ...] | None
                ) -> list[dict[str, Any]]:
    """One entry per row of `out` (N, K), float64 probabilities rounded to 6 places."""
    out = out.astype(np.float64).reshape(len(out), -1)
    if task == "regression":
        return [{"values": [float(v) for v in row]} for row in out]
    if task == "multilabel":
        names = names_for(out.shape[1], class_names)
        probs = sigmoid(out)
        return [{"labels": [n for n, p in zip(names, row, strict=True) if p >= 0.5],
                 "probabilities": {n: round(float(p), 6) for n, p in zip(names, row,
                                                                        strict=True)}}
                for row in probs]
    if out.shape[1] == 1:  # a binary bce_with_logits network: one logit, for class 1
        p1 = sigmoid(out[:, 0])
        probs = np.stack([1 - p1, p1], axis=1)
    else:
        probs = softmax(out)
    names = names_for(probs.shape[1], class_names)
    chosen = probs.argmax(axis=1)
    return [{"class": names[k], "index": int(k),
             "probabilities": {n: round(float(p), 6) for n, p in zip(names, row, strict=True)}}
            for k, row in zip(chosen, probs, strict=True)]
