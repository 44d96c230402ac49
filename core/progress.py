"""Where a job's training stands: the job row's `progress` column, as one type. Written when
a job is created (the plan's total steps), when an attempt resumes (rewound to its
checkpoint) and with every metric flush (the loop's position)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Progress:
    total_steps: int
    step: int = 0
    epoch: int = 0  # the epoch in progress, or the last one finished
    # Known once a worker has planned the run (an early stop lowers it to the last epoch).
    epochs: int | None = None

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Progress:
        return cls(total_steps=int(saved.get("total_steps", 0)), step=int(saved.get("step", 0)),
                   epoch=int(saved.get("epoch", 0)),
                   epochs=int(saved["epochs"]) if saved.get("epochs") is not None else None)

    def rewound(self, *, step: int, epoch: int) -> Progress:
        """The progress of an attempt that resumes at `step` (0: from the start)."""
        return replace(self, step=step, epoch=epoch)
