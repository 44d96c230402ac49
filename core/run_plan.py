"""The shape of a run: its batches, optimizer steps per epoch, the epochs it touches and its
total steps. Pure Python, so that the API (progress.total_steps at submit, the checks of a
spec) and the training loop count the same steps from one definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.specs.training import TrainingSpec


def batch_count(n_train: int, batch_size: int) -> int:
    """Batches in an epoch, as batch_bounds cuts them, without listing them."""
    count = math.ceil(n_train / batch_size)
    if count > 1 and n_train - (count - 1) * batch_size == 1:
        count -= 1  # a last batch of one sample is merged into the one before
    return count


def batch_bounds(n_train: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, end) of each batch of an epoch. A last batch of a single sample is merged into
    the one before: batchnorm cannot train on one sample, and its gradient is mostly noise."""
    starts = list(range(0, batch_count(n_train, batch_size) * batch_size, batch_size))
    if not starts:
        return []
    return [(s, e) for s, e in zip(starts, [*starts[1:], n_train], strict=True)]


def steps_per_epoch(n_train: int, batch_size: int, accumulate: int = 1) -> int:
    """Optimizer steps in an epoch: `accumulate` batches each, the last may take fewer."""
    return math.ceil(batch_count(n_train, batch_size) / accumulate)


@dataclass(frozen=True)
class RunPlan:
    """The run's shape: batches per epoch, optimizer steps per epoch (`accumulate` batches
    each; the epoch's last step may take fewer), and where the run ends."""

    n_train: int
    batch_size: int
    accumulate: int
    batches: int  # per epoch
    steps_per_epoch: int
    full_steps: int  # what the epochs take, before max_steps
    epochs: int  # epochs the run touches: the last may end early at max_steps
    total_steps: int
    _bounds: list[tuple[int, int]] = field(default_factory=list, repr=False, compare=False)

    @property
    def bounds(self) -> list[tuple[int, int]]:
        """(start, end) of each batch of an epoch, listed on first use (the API needs only
        the counts)."""
        if not self._bounds:
            self._bounds.extend(batch_bounds(self.n_train, self.batch_size))
        return self._bounds


def plan_run(n_train: int, cfg: TrainingSpec) -> RunPlan:
    """The run `cfg` describes over `n_train` training samples: epochs of batch_bounds'
    batches, `accumulate_batches` to a step, ended by max_steps when that comes first."""
    batches = batch_count(n_train, cfg.batch_size)
    per_epoch = math.ceil(batches / cfg.accumulate_batches)
    full = per_epoch * cfg.epochs
    total = full if cfg.max_steps is None else min(full, cfg.max_steps)
    epochs = math.ceil(total / per_epoch) if per_epoch else 0
    return RunPlan(n_train, cfg.batch_size, cfg.accumulate_batches, batches, per_epoch, full,
                   epochs, total)
