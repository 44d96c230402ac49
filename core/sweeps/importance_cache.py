"""Parameter importances, remembered per process: fANOVA takes about a second, and a client
polling a sweep would otherwise pay it on every read. Keyed by the completed trials' numbers
and values, so a new completed trial (or a deleted one) is a new key and the answer is never
stale; bounded, least recently used first out. Nothing is written to the database: a read of
a sweep stays a read."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict

from core.sweeps.results import Trial
from core.sweeps.spec import SweepSpec
from core.sweeps.study import importances

MAX_ENTRIES = 256

_lock = threading.Lock()
_remembered: OrderedDict[tuple, dict[str, float] | None] = OrderedDict()


def cached_importances(sweep_id: uuid.UUID, spec: SweepSpec, trials: list[Trial]
                       ) -> dict[str, float] | None:
    """`importances(spec, trials)`, computed once per sweep and set of completed trials."""
    key = (sweep_id, tuple((t.number, t.value) for t in trials if t.value is not None))
    with _lock:
        if key in _remembered:
            _remembered.move_to_end(key)
            return _remembered[key]
    values = importances(spec, trials)  # outside the lock: two readers may both compute once
    with _lock:
        _remembered[key] = values
        _remembered.move_to_end(key)
        while len(_remembered) > MAX_ENTRIES:
            _remembered.popitem(last=False)
    return values
