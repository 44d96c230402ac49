"""overfitting and underfitting, from the training and validation curves (BTTackler's
rules, with a margin: a validation loss that merely wobbles is not rising)."""

from __future__ import annotations

from core.diagnosis import actions as a
from core.diagnosis import thresholds as t
from core.diagnosis.context import Context
from core.diagnosis.finding import Finding, fmt


def overfitting(ctx: Context) -> Finding | None:
    """Either of two rules, after the warm-up, with (val - train) / train above OVERFIT_GAP:
    rising: the validation loss's last OVERFIT_WINDOW evaluations average more than
    OVERFIT_RISE above the OVERFIT_WINDOW before, while the training loss fell over the same
    window (BTTackler's); or stalled: the best validation loss is at least
    max(2 x OVERFIT_WINDOW, OVERFIT_STALE_SHARE of the evaluations) old, and the training
    loss has fallen by more than OVERFIT_TRAIN_FALL since then (the network kept fitting its
    training set and nothing of it reached the validation set). The second catches what a
    window of 3 against 3 cannot: a validation loss that rises by 1% an epoch, or levels
    off far above the training loss. Neither holds while the validation accuracy has risen by
    more than OVERFIT_ACCURACY_GAIN since the best validation loss: the network generalises
    better by the measure that counts, and the loss rises on its few confident errors."""
    val = ctx.series.finite("val_loss")
    train = ctx.epoch_losses()
    w = t.OVERFIT_WINDOW
    if len(val) < 2 * w or len(train) < 2 * w or not ctx.past_warmup():
        return None
    if train[-1] <= 0:
        return None
    gap = (val[-1] - train[-1]) / train[-1]
    if gap <= t.OVERFIT_GAP:
        return None
    best = min(val)
    best_at = len(val) - 1 - val[::-1].index(best)
    best_step = next(step for step, v in ctx.series.get("val_loss") if v == best)
    before, recent = sum(val[-2 * w:-w]) / w, sum(val[-w:]) / w
    train_before, train_recent = sum(train[-2 * w:-w]) / w, sum(train[-w:]) / w
    rise = (recent - before) / before if before > 0 else 0.0
    rising = rise > t.OVERFIT_RISE and train_recent < train_before
    stale = len(val) - 1 - best_at
    # The training loss at the best validation loss's evaluation (the same epoch's value).
    train_then = train[min(best_at, len(train) - 1)]
    train_fall = (train_then - train[-1]) / train_then if train_then > 0 else 0.0
    stalled = stale >= max(2 * w, t.OVERFIT_STALE_SHARE * len(val)) and \
        train_fall > t.OVERFIT_TRAIN_FALL
    if not rising and not stalled:
        return None
    gain = _accuracy_gain_since(ctx, best_step)
    if gain is not None and gain > t.OVERFIT_ACCURACY_GAIN:
        return None
    how = (f"val_loss averaged {fmt(recent)} over the last {w} evaluations, {fmt(100 * rise)}% "
           f"above the {w} before ({fmt(before)}), while train_loss fell from "
           f"{fmt(train_before)} to {fmt(train_recent)}") if rising else (
           f"val_loss has not improved for {stale} evaluations (its best {fmt(best)} at step "
           f"{best_step}, now {fmt(val[-1])}) while train_loss fell a further "
           f"{fmt(100 * train_fall)}% to {fmt(train[-1])}")
    return Finding(
        "overfitting",
        f"{how}; the gap (val - train) / train is {fmt(gap)} at step {ctx.step}"
        + (f"; the best val_loss was {fmt(best)} at step {best_step}" if rising else ""),
        data={"rise": rise, "gap": gap, "best_val_loss": best, "best_step": best_step,
              "stale_evaluations": stale, "train_fall": train_fall},
        actions=a.regularize(ctx.facts))


def _accuracy_gain_since(ctx: Context, step: int) -> float | None:
    """How much the validation accuracy rose from the evaluation at `step` to the latest
    (None without an accuracy: regression)."""
    points = ctx.series.get("val_accuracy")
    then = next((v for s, v in points if s == step), None)
    if then is None or not points:
        return None
    return points[-1][1] - then


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
