"""`metrics`: what is measured beside the metrics the task implies.

Every job records its loss; classification adds accuracy, multi-label adds per-label
accuracy and exact_match, regression adds rmse, mae and r2. This section asks for more.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from models.strict import StrictModel


def better_direction(name: str) -> Literal["min", "max"] | None:
    """Which way a metric improves: for the summary's best values, early stopping's and
    reduce_on_plateau's default mode. None: it has no better (lr, grad_norm/layers.0)."""
    if "/" in name:
        return None  # per-layer statistics: a diagnostic, not a score
    if "accuracy" in name or name.endswith(("exact_match", "r2")):
        return "max"
    if name.endswith(("loss", "rmse", "mae")):
        return "min"
    return None


class MetricsSpec(StrictModel):
    top_k: int | None = Field(
        None, ge=2, le=100,
        description="also record top-k accuracy on the validation and test splits "
        "(`val_top5_accuracy`, `test_top5_accuracy` for 5): a sample counts as right when its "
        "class is among the k highest logits. cross_entropy jobs only; k must be below the "
        "number of classes. null: accuracy alone",
        examples=[5],
    )
