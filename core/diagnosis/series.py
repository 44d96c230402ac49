"""The run's metric series as the rules read them: points by name, in the order the loop
emitted them (step order), plus the checks (evaluations, epoch ends) seen so far."""

from __future__ import annotations

import math
from collections.abc import Iterable


def _module_order(path: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in path.split("."))


class Series:
    def __init__(self) -> None:
        self.points: dict[str, list[tuple[int, float]]] = {}
        self.last_step = 0

    def add(self, name: str, step: int, value: float) -> None:
        self.points.setdefault(name, []).append((step, value))
        self.last_step = max(self.last_step, step)

    def add_all(self, points: Iterable[tuple[str, int, float]]) -> None:
        for name, step, value in points:
            self.add(name, step, value)

    def get(self, name: str) -> list[tuple[int, float]]:
        return self.points.get(name, [])

    def values(self, name: str) -> list[float]:
        return [v for _, v in self.get(name)]

    def tail(self, name: str, n: int) -> list[float]:
        """The last n values: the rules run at every check, so they read windows, not the
        whole history."""
        return [v for _, v in self.points.get(name, [])[-n:]]

    def first(self, name: str) -> float | None:
        return next((v for _, v in self.get(name) if math.isfinite(v)), None)

    def latest(self, name: str) -> float | None:
        found = self.points.get(name)
        return found[-1][1] if found else None

    def layers(self, prefix: str) -> list[str]:
        """Layer names of a per-layer statistic (`grad_norm/`) in the model's order: module
        paths sorted with their numbers as numbers (layers.2 before layers.10; a residual
        block's layers before its shortcut), whatever order the points came in (a resumed
        attempt reads them back from the database)."""
        start = prefix + "/"
        return sorted((name[len(start):] for name in self.points if name.startswith(start)),
                      key=_module_order)

    def finite(self, name: str) -> list[float]:
        return [v for v in self.values(name) if math.isfinite(v)]
