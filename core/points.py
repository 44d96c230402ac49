"""A metric point: what the training loop logs, the worker buffers and the database stores.
One type from the loop to the table, built by keyword so that no two places can disagree on
the order of its fields."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    name: str
    value: float
    step: int
    epoch: int
    # When the point was logged: stamped by the sink that buffers it (worker/callbacks.py),
    # not by the loop, which has no use for the wall clock.
    wall_time: datetime | None = None

    def stamped(self, when: datetime) -> Point:
        return replace(self, wall_time=when)
