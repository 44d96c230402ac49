"""noisy_loss: over the last NOISE_POINTS logged training losses, the slope changes sign at
most points (smoothness below NOISE_SMOOTHNESS), the typical change from point to point is
large against the loss's level (NOISE_AMPLITUDE), and the level is still far above zero
(NOISE_LEVEL_SHARE of the first loss). See thresholds.py for why smoothness alone is not
enough."""

from __future__ import annotations

import statistics

from core.diagnosis import actions as a
from core.diagnosis import thresholds as t
from core.diagnosis.context import Context
from core.diagnosis.finding import Action, Finding, fmt


def smoothness(values: list[float]) -> float:
    """Share of interior points where the slope keeps its sign."""
    slopes = [b - a_ for a_, b in zip(values, values[1:], strict=False)]
    pairs = list(zip(slopes, slopes[1:], strict=False))
    if not pairs:
        return 1.0
    return sum(1 for s, u in pairs if s * u > 0) / len(pairs)


def noisy_loss(ctx: Context) -> Finding | None:
    points = ctx.series.get("train_loss_step")
    first = ctx.first_loss()
    if not ctx.past_warmup() or first is None or first <= 0:
        return None
    # Only points past the warm-up: the first fall is no noise.
    start = t.WARMUP_SHARE * ctx.facts.total_steps
    values = [v for step, v in points[-t.NOISE_POINTS:] if step > start]
    if len(values) < t.NOISE_POINTS:
        return None
    smooth = smoothness(values)
    level = statistics.median(values)
    change = statistics.median(abs(b - a_) for a_, b in zip(values, values[1:], strict=False))
    if smooth >= t.NOISE_SMOOTHNESS or level <= 0 or change / level <= t.NOISE_AMPLITUDE \
            or level < t.NOISE_LEVEL_SHARE * first:
        return None
    facts = ctx.facts
    return Finding(
        "noisy_loss",
        f"over the last {len(values)} logged training losses the slope changed sign at "
        f"{fmt(100 * (1 - smooth))}% of the points, and the typical change between points, "
        f"{fmt(change)}, is {fmt(100 * change / level)}% of the loss's level {fmt(level)} "
        f"(step {ctx.step})",
        data={"smoothness": smooth, "change": change, "level": level},
        actions=[Action("training.batch_size", facts.batch_size * 4,
                        f"a 4x larger batch ({facts.batch_size} -> {facts.batch_size * 4}) "
                        "halves the gradient's noise"),
                 a.lower_lr(facts, 3.0)])
