"""Noticing a training process that makes no progress: stopped (SIGSTOP, a frozen container),
deadlocked, or waiting on a disk or a device that never answers. Its supervisor would renew
its lease for as long as that lasts, so without a watchdog the job stays "running" forever.
"""

from __future__ import annotations

from collections import deque

# Under this share of one core over the whole window, the process is taken as stalled: a
# stopped or blocked process uses none; a training one, even a slow one, uses most of a core.
STALL_CPU_SHARE = 0.01


class StallWatch:
    """The training process's CPU time over the last `timeout_s` seconds. CPU time rather than
    the step: a long evaluation, or a checkpoint being serialised, moves no step for minutes
    but keeps the process busy, and must not be taken for a hang."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._samples: deque[tuple[float, float]] = deque()

    def restart(self) -> None:
        """Forget the samples: the time until now does not count (e.g. the database was away,
        and the training process is waiting for it by design)."""
        self._samples.clear()

    def observe(self, now: float, cpu_s: float) -> float | None:
        """Add a sample (monotonic seconds, the process's CPU seconds). Returns how long the
        process has made no progress when that is at least `timeout_s`, else None."""
        samples = self._samples
        samples.append((now, cpu_s))
        # Keep one sample at least timeout_s old, and none older than needed.
        while len(samples) > 1 and samples[1][0] <= now - self.timeout_s:
            samples.popleft()
        since, cpu_then = samples[0]
        window = now - since
        if window < self.timeout_s or cpu_s - cpu_then >= STALL_CPU_SHARE * window:
            return None
        return window
