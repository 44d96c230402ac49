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


def _saturated_throughout(ctx: Context) -> dict[str, float]:
    """Layers above SATURATED_SHARE at every check so far, of a classifier that had not yet
    learnt at the first check (its validation accuracy below half the way from chance to 1):
    saturated before it learnt, so the initialisation or the inputs' scale put them there,
    not a fit grown confident (a healthy classifier's last hidden layer can be saturated at
    its first check, at 90% accuracy)."""
    chance = ctx.facts.chance_accuracy
    accuracy = ctx.series.first("val_accuracy")
    if accuracy is None:
        accuracy = ctx.series.first("train_accuracy")
    if chance is None or accuracy is None or \
            accuracy >= chance + t.UNDERFIT_REACH * (1 - chance):
        return {}
    found = {}
    for layer in ctx.series.layers("saturated_share"):
        values = ctx.series.values(f"saturated_share/{layer}")
        if len(values) >= t.WARMUP_CHECKS and all(v > t.SATURATED_SHARE for v in values):
            found[layer] = values[-1]
    return found


def saturation(ctx: Context) -> Finding | None:
    """More than SATURATED_SHARE of a sigmoid/tanh layer's outputs near the bounds, either
    while learning stalls or at every check since the first, before the network had learnt
    (then the network learns, slowly,
    through the few units still in their range: a network with N(0, 1) weights under tanh
    still reaches 69% on digits in 10 epochs, while its healthy twin reaches 95% in 2)."""
    if ctx.checks < t.WARMUP_CHECKS:
        return None
    stalled = ctx.stalling()
    found = _over(ctx, "saturated_share", t.SATURATED_SHARE) if stalled else \
        _saturated_throughout(ctx)
    if not found:
        return None
    facts = ctx.facts
    actions = a.relu_instead(facts) + a.non_none(a.init_for_activations(facts),
                                                 a.standardize(facts))
    why = "the loss has stalled" if stalled else (
        "they have been since the first check, so the initialisation or the inputs' scale put "
        "them there")
    return Finding(
        "saturation",
        f"more than {fmt(100 * t.SATURATED_SHARE)}% of the outputs sit within "
        f"{fmt(t.SATURATION_MARGIN)} of their bounds, where the gradient is near 0, at step "
        f"{ctx.step}: {_listed(found)}; {why}",
        data={"saturated_share": max(found.values()),
              **{f"saturated_share/{k}": v for k, v in found.items()}},
        actions=actions)
