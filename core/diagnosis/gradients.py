"""vanishing_gradients and exploding_gradients (AutoTrainer's rules) from the per-layer
gradient norms `grad_norm/<layer>` (one step an epoch, read as a geometric mean over the
last GRADIENT_WINDOW checks), reported only while learning stalls:
a small first-layer gradient in a network that learns is no fault."""

from __future__ import annotations

import math

from core.diagnosis import actions as a
from core.diagnosis import thresholds as t
from core.diagnosis.context import Context
from core.diagnosis.finding import Finding, fmt


def _windowed(ctx: Context, layer: str) -> float | None:
    """The layer's gradient norm over the last GRADIENT_WINDOW checks, as a geometric mean:
    one step's norm swings tenfold from batch to batch, and a rule that read it alone would
    come and go with the batch (AutoTrainer's deep sigmoid demo: the ratio 3.5e-5 at one
    check, 1.4e-3 at the next, 3.5e-5 again)."""
    values = ctx.series.tail(f"grad_norm/{layer}", t.GRADIENT_WINDOW)
    if not values or any(not math.isfinite(v) for v in values):
        return None
    if any(v <= 0 for v in values):
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _first_last(ctx: Context) -> tuple[str, str, float, float] | None:
    layers = ctx.series.layers("grad_norm")
    if len(layers) < 2:
        return None
    first, last = layers[0], layers[-1]
    first_norm = _windowed(ctx, first)
    last_norm = _windowed(ctx, last)
    if first_norm is None or last_norm is None:
        return None
    return first, last, first_norm, last_norm


def _stall_words(ctx: Context) -> str:
    progress = ctx.progress()
    loss = ctx.series.latest("val_loss") or ctx.series.latest("train_loss")
    words = []
    if loss is not None:
        words.append(f"the loss is {fmt(loss)}")
    if progress is not None:
        words.append(f"it fell {fmt(100 * progress)}% over the last {t.STALL_CHECKS} epochs")
    if ctx.at_chance():
        words.append("the accuracy is at chance")
    return ", ".join(words) or "learning stalls"


def vanishing_gradients(ctx: Context) -> Finding | None:
    found = _first_last(ctx)
    if found is None or ctx.checks < t.WARMUP_CHECKS:
        return None
    first, last, first_norm, last_norm = found
    if last_norm <= 0:
        return None
    ratio = first_norm / last_norm
    if ratio >= t.VANISHING_RATIO or first_norm >= t.VANISHING_FIRST or not ctx.stalling():
        return None
    facts = ctx.facts
    actions = a.relu_instead(facts) or a.non_none(a.init_for_activations(facts))
    if not actions:
        actions = [a.he_init()] if facts.init != "he_normal" else []
    return Finding(
        "vanishing_gradients",
        f"first/last gradient-norm ratio {fmt(ratio)} ({first} {fmt(first_norm)}, {last} "
        f"{fmt(last_norm)}; geometric means over the last {t.GRADIENT_WINDOW} checks) at step "
        f"{ctx.step}, below {fmt(t.VANISHING_RATIO)} with the first "
        f"below {fmt(t.VANISHING_FIRST)}, while {_stall_words(ctx)}",
        data={"ratio": ratio, "first": first_norm, "last": last_norm}, actions=actions)


def exploding_gradients(ctx: Context) -> Finding | None:
    """The first/last ratio above EXPLODING_RATIO (as 3-check means), or the largest norm
    doubling at EXPLODING_DOUBLINGS consecutive checks while learning stalls. The ratio is not
    gated on stalling (ours): it sits 10x above every healthy run's (at most 6.2 over the
    bench's 42), and a network whose first layer's gradient is 1,000x its last one's (deep
    tanh in its chaotic regime) still lowers its loss a little from a bad start, which the
    stall test would read as learning."""
    found = _first_last(ctx)
    if found is None or not ctx.past_warmup():
        return None
    first, last, first_norm, last_norm = found
    ratio = first_norm / last_norm if last_norm > 0 else float("inf")
    window = t.EXPLODING_DOUBLINGS + 1
    recent = [max(values) for values in zip(*(ctx.series.tail(f"grad_norm/{layer}", window)
                                              for layer in ctx.series.layers("grad_norm")),
                                            strict=False)]
    doubling = len(recent) == window and all(
        b >= 2 * a_ for a_, b in zip(recent, recent[1:], strict=False))
    doubling = doubling and ctx.stalling()
    if ratio <= t.EXPLODING_RATIO and not doubling:
        return None
    why = (f"first/last gradient-norm ratio {fmt(ratio)} ({first} {fmt(first_norm)}, {last} "
           f"{fmt(last_norm)}; geometric means over the last {t.GRADIENT_WINDOW} checks), above "
           f"{fmt(t.EXPLODING_RATIO)}" if ratio > t.EXPLODING_RATIO
           else f"the largest layer gradient norm doubled at each of the last "
           f"{t.EXPLODING_DOUBLINGS} checks, to {fmt(recent[-1])}")
    facts = ctx.facts
    return Finding(
        "exploding_gradients", f"{why} at step {ctx.step}, while {_stall_words(ctx)}",
        data={"ratio": ratio, "first": first_norm, "last": last_norm, "largest": recent[-1]},
        actions=a.non_none(a.add_clip(facts), a.lower_lr(facts), a.init_for_activations(facts)))
