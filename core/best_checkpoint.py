"""Which checkpoint of a job is its best: the one decision retention (worker/callbacks.py)
and the API's `best: true` (api/routes/checkpoints.py) both take from here.

The metric is the one the spec watches (early stopping's, else reduce_on_plateau's), else
val_loss; the better way is the spec's `mode`, else the metric's own (core/specs/metrics.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, Protocol, TypeVar

from core.specs.metrics import better_direction

DEFAULT_MONITOR = "val_loss"


class HasMetrics(Protocol):
    step: int
    metrics: dict[str, Any] | None


Row = TypeVar("Row", bound=HasMetrics)


def monitored(spec: dict[str, Any]) -> tuple[str, Literal["min", "max"]]:
    """(metric, "min" or "max") that decides which checkpoint is best, from a stored spec."""
    watching = [(spec.get("training") or {}).get("early_stopping"), spec.get("schedule")]
    for section in watching:
        if isinstance(section, dict) and section.get("monitor"):
            name = section["monitor"]
            mode = section.get("mode") or better_direction(name) or "min"
            return name, mode
    return DEFAULT_MONITOR, "min"


def best_checkpoint(rows: Sequence[Row], spec: dict[str, Any]) -> Row | None:
    """The row whose monitored metric is best; the earliest step on a tie. None when no row
    recorded a finite value of it (e.g. a job without a validation split)."""
    name, mode = monitored(spec)
    scored = [(row.metrics[name], row.step, row) for row in rows
              if isinstance((row.metrics or {}).get(name), int | float)
              and math.isfinite(row.metrics[name])]
    if not scored:
        return None
    sign = 1 if mode == "min" else -1
    return min(scored, key=lambda s: (sign * s[0], s[1]))[2]
