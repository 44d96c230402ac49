"""The learning-rate range test's arithmetic: its rates, the smoothed loss, when it stops,
and the rates it suggests. Pure Python, so that the worker's loop (worker/lr_find.py), the
tests and anyone reading the report agree on one definition, without torch.

The suggestion rules are fastai's (fastai/callback/schedule.py: `valley`, `steep`,
`minimum`), applied as `Learner.lr_find` applies them: to the smoothed loss, leaving out the
first tenth of the requested steps (the rate is too low there for the loss to move) and the
last 5 points recorded (the blow-up that stopped the test). Slopes are taken against the
natural log of the rate.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SKIP_END = 5  # points left out at the end, as fastai's lr_find does
MIN_POINTS = 5  # fewer left after the trimming: no suggestion is worth making


def rate_at(index: int, start_lr: float, end_lr: float, steps: int) -> float:
    """The rate of step `index` (0-based): start_lr at the first step, end_lr at the last,
    a constant factor between them."""
    if steps <= 1:
        return start_lr
    return start_lr * (end_lr / start_lr) ** (index / (steps - 1))


class SmoothedLoss:
    """fastai's AvgSmoothLoss: an exponential moving average of the loss, divided by
    1 - beta**n so that the first values are not pulled towards 0."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.average = 0.0
        self.count = 0

    def add(self, loss: float) -> float:
        self.count += 1
        self.average = self.beta * self.average + (1 - self.beta) * loss
        return self.average / (1 - self.beta ** self.count)


class DivergenceWatch:
    """Whether the test should stop: a non-finite loss, or a smoothed loss above
    `stop_factor` times the lowest seen (None: only a non-finite loss stops it)."""

    def __init__(self, stop_factor: float | None) -> None:
        self.stop_factor = stop_factor
        self.best = math.inf

    def diverged(self, smoothed: float) -> bool:
        if not math.isfinite(smoothed):
            return True
        self.best = min(self.best, smoothed)
        return self.stop_factor is not None and smoothed > self.stop_factor * self.best


def valley(lrs: Sequence[float], losses: Sequence[float]) -> int:
    """fastai's valley: the index about half-way along the longest strictly descending
    sequence of losses (not necessarily contiguous points), where the loss falls steadily and
    is still far from the blow-up. fastai computes each point's longest descent ending there
    in O(n^2); the same lengths come from patience sorting in O(n log n) (a test checks both
    agree). As in fastai, the sequence is taken to start one point before its first (an
    off-by-one kept so that the rates agree); an index before the first point is clamped to 0
    (fastai would wrap round to the last)."""
    n = len(losses)
    tails: list[float] = []  # tails[k]: the largest negated loss ending a descent of k + 1
    lengths = [0] * n
    for i, loss in enumerate(losses):
        k = bisect_left(tails, -loss)
        if k == len(tails):
            tails.append(-loss)
        else:
            tails[k] = -loss
        lengths[i] = k + 1
    end = max(range(n), key=lambda i: (lengths[i], -i)) if n else 0
    start = end - lengths[end] if n else 0
    sections = (end - start) / 3
    return max(0, start + int(sections) + int(sections / 2))


def steep(lrs: Sequence[float], losses: Sequence[float]) -> int:
    """fastai's steep: the point where the loss falls fastest against log(rate), the first
    point of the steepest segment."""
    slopes = [(losses[i + 1] - losses[i]) / (math.log(lrs[i + 1]) - math.log(lrs[i]))
              for i in range(len(losses) - 1)]
    return min(range(len(slopes)), key=lambda i: (slopes[i], i))


def minimum(lrs: Sequence[float], losses: Sequence[float]) -> int:
    """The index of the lowest loss; the rule suggests a tenth of its rate."""
    return min(range(len(losses)), key=lambda i: (losses[i], i))


@dataclass
class RangeTestReport:
    """What summary.lr_find holds: the suggested rate and the rule that chose it, the three
    rules' rates, the points recorded and why the test stopped."""

    rule: str
    points: int
    stopped: str
    suggestions: dict[str, float | None] = field(default_factory=dict)
    # The rate and smoothed loss each rule points at on the curve, for a chart to mark.
    marks: dict[str, dict[str, float]] = field(default_factory=dict)
    note: str | None = None

    @property
    def suggested_lr(self) -> float | None:
        return self.suggestions.get(self.rule)

    def as_dict(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "suggested_lr": self.suggested_lr, "rule": self.rule,
            "suggestions": dict(self.suggestions), "marks": dict(self.marks),
            "points": self.points, "stopped": self.stopped,
        }
        if self.note:
            report["note"] = self.note
        return report


def suggest(lrs: Sequence[float], smoothed: Sequence[float], steps: int, rule: str,
            stopped: str) -> RangeTestReport:
    """The report for a test that recorded `smoothed` losses at rates `lrs` out of `steps`
    requested. Too few points left after the trimming (the loss diverged almost at once):
    no suggestion, and a note that says what to change."""
    first, last = steps // 10, len(lrs) - SKIP_END
    used_lrs, used = list(lrs[first:last]), list(smoothed[first:last])
    report = RangeTestReport(rule=rule, points=len(lrs), stopped=stopped)
    if len(used) < MIN_POINTS:
        report.suggestions = {name: None for name in ("valley", "steep", "minimum")}
        report.note = (
            f"only {len(lrs)} points before the test stopped, {max(0, len(used))} after leaving "
            f"out the first {first} and the last {SKIP_END}: too few to suggest a rate. Lower "
            "lr_find.start_lr or lr_find.end_lr, or raise lr_find.steps"
        )
        return report
    for name, pick, scale in (("valley", valley, 1.0), ("steep", steep, 1.0),
                              ("minimum", minimum, 0.1)):
        index = pick(used_lrs, used)
        report.suggestions[name] = used_lrs[index] * scale
        report.marks[name] = {"lr": used_lrs[index], "loss": used[index]}
    return report
