"""Which checkpoints of a job to delete: the one rule that retention while training
(worker/callbacks.py) and retention once a job has ended (worker/checkpoint_cleanup.py) share.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar

from core.best_checkpoint import best_checkpoint


class CheckpointRow(Protocol):
    id: int
    step: int
    metrics: dict[str, Any] | None


Row = TypeVar("Row", bound=CheckpointRow)


def beyond_retention(rows: Sequence[Row], spec: dict[str, Any], keep: int,
                     protected: Iterable[int | None] = ()) -> list[Row]:
    """Rows in step order -> those to delete: all but the last `keep`, the best (by the spec's
    monitored metric and its direction, as the API marks it) and the `protected` ids (the
    checkpoint an attempt resumed from and the one it wrote last: a resumed attempt must
    never lose the file it stands on, whatever older rows rank above it)."""
    kept = {row.id for row in rows[-keep:]} if keep > 0 else set()
    kept |= {i for i in protected if i is not None}
    best = best_checkpoint(rows, spec)
    if best is not None:
        kept.add(best.id)
    return [row for row in rows if row.id not in kept]
