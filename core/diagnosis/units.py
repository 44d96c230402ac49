"""dead_units and saturation, from the activation statistics (worker/activation_probe.py):
`dead_share/<layer>`, the share of a ReLU-like layer's units inactive (output <= 0) on every
sample of the evaluation batch, and `saturated_share/<layer>`, the share of a sigmoid/tanh
layer's outputs within SATURATION_MARGIN of their bounds."""

from __future__ import annotations

from core.diagnosis import actions as a
from core.diagnosis import thresholds as t
from core.diagnosis.context import Context
from core.diagnosis.finding import Finding, fmt


def _over(ctx: Context, statistic: str, bound: float) -> dict[str, float]:
    found = {}
    for layer in ctx.series.layers(statistic):
        value = ctx.series.latest(f"{statistic}/{layer}")
        if value is not None and value > bound:
            found[layer] = value
    return found


def _listed(found: dict[str, float]) -> str:
    return ", ".join(f"{layer} {fmt(100 * share)}%" for layer, share in found.items())


def _spec_paths(ctx: Context, kinds: tuple[str, ...]) -> list[str]:
    return [path for path, kind in ctx.facts.activations if kind in kinds]


def dead_units(ctx: Context) -> Finding | None:
    if ctx.checks < t.WARMUP_CHECKS:
        return None
    found = _over(ctx, "dead_share", t.DEAD_SHARE)
    if not found:
        return None
    facts = ctx.facts
    actions = a.leaky_relu_instead(facts, _spec_paths(ctx, ("relu",)))
    actions += a.non_none(a.init_for_activations(facts))
    if facts.lr > 0:
        actions.append(a.lower_lr(facts, 3.0))
    worst = max(found.values())
    return Finding(
        "dead_units",
        f"more than {fmt(100 * t.DEAD_SHARE)}% of the units output 0 on every one of the "
        f"evaluation samples at step {ctx.step}: {_listed(found)}",
        data={"dead_share": worst, **{f"dead_share/{k}": v for k, v in found.items()}},
        actions=actions)


def saturation(ctx: Context) -> Finding | None:
    if ctx.checks < t.WARMUP_CHECKS or not ctx.stalling():
        return None
    found = _over(ctx, "saturated_share", t.SATURATED_SHARE)
    if not found:
        return None
    facts = ctx.facts
    actions = a.relu_instead(facts) + a.non_none(a.init_for_activations(facts),
                                                 a.standardize(facts))
    return Finding(
        "saturation",
        f"more than {fmt(100 * t.SATURATED_SHARE)}% of the outputs sit within "
        f"{fmt(t.SATURATION_MARGIN)} of their bounds, where the gradient is near 0, at step "
        f"{ctx.step}: {_listed(found)}; the loss has stalled",
        data={"saturated_share": max(found.values()),
              **{f"saturated_share/{k}": v for k, v in found.items()}},
        actions=actions)
