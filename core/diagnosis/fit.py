"""overfitting and underfitting, from the training and validation curves (BTTackler's
rules, with a margin: a validation loss that merely wobbles is not rising)."""

from __future__ import annotations

from core.diagnosis import actions as a
from core.diagnosis import thresholds as t
from core.diagnosis.context import Context
from core.diagnosis.finding import Finding, fmt


def overfitting(ctx: Context) -> Finding | None:
    """The validation loss's last OVERFIT_WINDOW evaluations average more than OVERFIT_RISE
    above the OVERFIT_WINDOW before, the training loss kept falling over the same window,
    and (val - train) / train is above OVERFIT_GAP."""
    val = ctx.series.finite("val_loss")
    train = ctx.epoch_losses()
    w = t.OVERFIT_WINDOW
    if len(val) < 2 * w or len(train) < 2 * w or not ctx.past_warmup():
        return None
    before, recent = sum(val[-2 * w:-w]) / w, sum(val[-w:]) / w
    train_before, train_recent = sum(train[-2 * w:-w]) / w, sum(train[-w:]) / w
    if before <= 0 or train_recent <= 0:
        return None
    rise = (recent - before) / before
    gap = (val[-1] - train[-1]) / train[-1]
    if rise <= t.OVERFIT_RISE or train_recent >= train_before or gap <= t.OVERFIT_GAP:
        return None
    best = min(val)
    best_step = next(step for step, v in ctx.series.get("val_loss") if v == best)
    return Finding(
        "overfitting",
        f"val_loss averaged {fmt(recent)} over the last {w} evaluations, {fmt(100 * rise)}% "
        f"above the {w} before ({fmt(before)}), while train_loss fell from {fmt(train_before)} "
        f"to {fmt(train_recent)}; the gap (val - train) / train is {fmt(gap)} at step "
        f"{ctx.step}; the best val_loss was {fmt(best)} at step {best_step}",
        data={"rise": rise, "gap": gap, "best_val_loss": best, "best_step": best_step},
        actions=a.regularize(ctx.facts))


def underfitting(ctx: Context) -> Finding | None:
    """From UNDERFIT_SHARE of the run on, a classifier whose training accuracy covers less
    than UNDERFIT_REACH of the way from chance to 1, has stopped rising, and is matched by its
    validation accuracy: the network cannot fit its training data. At chance is
    stuck_at_chance's, not this rule's."""
    chance = ctx.facts.chance_accuracy
    train = ctx.series.finite("train_accuracy")
    val = ctx.series.latest("val_accuracy")
    if chance is None or val is None or len(train) <= t.STALL_CHECKS:
        return None
    if not ctx.past_warmup(t.UNDERFIT_SHARE) or ctx.at_chance():
        return None
    reach = chance + t.UNDERFIT_REACH * (1 - chance)
    rose = train[-1] - train[-t.STALL_CHECKS - 1]
    if train[-1] >= reach or abs(train[-1] - val) > t.UNDERFIT_CLOSE or \
            rose >= t.UNDERFIT_PLATEAU:
        return None
    facts = ctx.facts
    actions = a.non_none(a.raise_lr(facts, 3.0)) if facts.lr < 0.01 else []
    if facts.weight_decay > 0:
        actions.append(a.Action("optimizer.weight_decay", 0.0,
                                "weight decay holds back a network that cannot fit yet"))
    return Finding(
        "underfitting",
        f"train_accuracy {fmt(train[-1])} (val {fmt(val)}) at step {ctx.step}, "
        f"{round(100 * ctx.share_done())}% into the run, rose {fmt(100 * rose)} points over the "
        f"last {t.STALL_CHECKS} epochs and is below {fmt(reach)}, half the way from chance "
        f"({fmt(chance)}) to 1: the network cannot fit its training data; give it more capacity "
        "(wider or more layers in model.layers)",
        data={"train_accuracy": train[-1], "val_accuracy": val, "rise": rose},
        actions=actions)
