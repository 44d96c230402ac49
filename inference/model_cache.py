"""Loaded models kept for the next request, least recently used evicted first, by the bytes
of their parameters and buffers against a budget. Keyed by the checkpoint file's sha256, so
a job's new best checkpoint is a new entry and the old one is never served for it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class ModelCache(Generic[Value]):
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[str, tuple[Value, int]] = OrderedDict()
        self.loads = 0
        self.evictions = 0

    @property
    def used_bytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def keys(self) -> list[str]:
        return list(self._entries)

    def get(self, key: str, load: Callable[[], tuple[Value, int]]) -> tuple[Value, bool]:
        """(value, whether it was cached). A model larger than the whole budget is still
        served, alone: the budget bounds what is kept, not what may be asked for."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key][0], True
        value, size = load()
        self.loads += 1
        self._entries[key] = (value, size)
        while len(self._entries) > 1 and self.used_bytes > self.budget_bytes:
            self._entries.popitem(last=False)
            self.evictions += 1
        return value, False
