"""lr_too_high and lr_too_low: the per-layer update ratio |dw|/|w| of one step
(`update_ratio/<layer>`, taken once an epoch), its mean of log10 over the last
UPDATE_RATIO_WINDOW checks against TheDeepChecker's bounds (cs231n: about 1e-3 is healthy),
gated on the loss: too high when the median layer moves too much while learning stalls; too
low when every layer moves too little while the loss falls slowly and is still far from
where it could be."""

from __future__ import annotations

import math
import statistics

from core.diagnosis import actions as a
from core.diagnosis import thresholds as t
from core.diagnosis.context import Context
from core.diagnosis.finding import Finding, fmt


def _windowed_log_ratios(ctx: Context) -> dict[str, float]:
    """Each trained layer's mean log10 update ratio over the window (layers with a full
    window of positive ratios only)."""
    means = {}
    for layer in ctx.series.layers("update_ratio"):
        values = ctx.series.tail(f"update_ratio/{layer}", t.UPDATE_RATIO_WINDOW)
        if len(values) == t.UPDATE_RATIO_WINDOW and all(v > 0 for v in values):
            means[layer] = sum(math.log10(v) for v in values) / len(values)
    return means


def _describe(means: dict[str, float]) -> str:
    low = min(means, key=means.get)
    high = max(means, key=means.get)
    return (f"(lowest {low} {fmt(10 ** means[low])}, highest {high} "
            f"{fmt(10 ** means[high])})")


def lr_too_high(ctx: Context) -> Finding | None:
    if not ctx.past_warmup():
        return None
    means = _windowed_log_ratios(ctx)
    if not means:
        return None
    median = statistics.median(means.values())
    if median <= t.UPDATE_RATIO_HIGH_LOG10 or not ctx.stalling():
        return None
    progress = ctx.progress()
    return Finding(
        "lr_too_high",
        f"each step moves the weights by {fmt(10 ** median)} of their norm (median over layers "
        f"of the last {t.UPDATE_RATIO_WINDOW} checks, {_describe(means)}; healthy is about "
        f"1e-3, above {fmt(10 ** t.UPDATE_RATIO_HIGH_LOG10)} is too much) while the training "
        f"loss " + (f"fell only {fmt(100 * progress)}% over the last {t.STALL_CHECKS} epochs"
                    if progress is not None else "stays at chance"),
        data={"update_ratio": 10 ** median, **({"progress": progress} if progress is not None
                                              else {})},
        actions=a.non_none(a.lower_lr(ctx.facts), a.add_warmup(ctx.facts)))


def lr_too_low(ctx: Context) -> Finding | None:
    if not ctx.past_warmup():
        return None
    means = _windowed_log_ratios(ctx)
    losses = ctx.epoch_losses()
    first = ctx.first_loss()
    if not means or len(losses) <= t.SLOW_PERIODS or first is None or first <= 0:
        return None
    # Every layer: one layer that barely moves while the others do is a gradient problem
    # (vanishing_gradients), not the rate's.
    highest = max(means.values())
    if highest >= t.UPDATE_RATIO_LOW_LOG10:
        return None
    recent = losses[-t.SLOW_PERIODS - 1:]
    falls = [(b - c) / b for b, c in zip(recent, recent[1:], strict=False) if b > 0]
    if len(falls) < t.SLOW_PERIODS or max(falls) >= t.SLOW_PROGRESS:
        return None
    if losses[-1] < t.LOW_LR_LOSS_SHARE * first:
        return None
    action = a.raise_lr(ctx.facts)
    return Finding(
        "lr_too_low",
        f"each step moves every layer's weights by at most {fmt(10 ** highest)} of their norm "
        f"(mean over the last {t.UPDATE_RATIO_WINDOW} checks, {_describe(means)}; below "
        f"{fmt(10 ** t.UPDATE_RATIO_LOW_LOG10)} is too little), and the training loss fell at "
        f"most {fmt(100 * max(falls))}% an epoch over the last {t.SLOW_PERIODS} epochs, still at "
        f"{fmt(losses[-1])} of a first {fmt(first)}",
        data={"update_ratio": 10 ** highest, "largest_fall": max(falls), "loss": losses[-1],
              "first_loss": first},
        actions=[action] if action else [])
