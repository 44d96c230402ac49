"""Requests per second per API key: a token bucket per key, in this API process. Each of
several API processes (`traindock api --workers N`, several machines) keeps its own, so the
rate a key gets is the setting times the processes it reaches."""

from __future__ import annotations

import threading
from collections import OrderedDict

MAX_KEYS = 10_000  # buckets kept; the least recently used beyond it start full again


class RateLimiter:
    def __init__(self, per_s: float, burst: int) -> None:
        self.per_s = per_s
        self.burst = max(1, burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now: float) -> float:
        """Spend one request of `key`'s bucket. Returns 0 when allowed, else the seconds to
        wait until one is."""
        with self._lock:
            tokens, then = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.per_s
            while len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
            return wait
