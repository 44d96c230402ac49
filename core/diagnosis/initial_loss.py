"""suspicious_initial_loss and stuck_at_chance: a classifier's loss against the loss of
guessing, ln C for C balanced classes (TheDeepChecker; cs231n's "look for the correct loss at
chance performance")."""

from __future__ import annotations

from core.diagnosis import actions as a
from core.diagnosis import thresholds as t
from core.diagnosis.context import Context
from core.diagnosis.finding import Finding, fmt


def suspicious_initial_loss(ctx: Context) -> Finding | None:
    """The first logged training loss |L0 - ln C| >= INITIAL_LOSS_TOLERANCE * ln C (and
    INITIAL_LOSS_FLOOR): the
    network starts far from guessing (outputs too large: inputs not normalised, weights too
    large). Below ln C needs no check: L0 >= 0 always, so only L0 >= 2 ln C fires."""
    chance = ctx.facts.chance_loss
    first = ctx.series.get("train_loss_step")
    if chance is None or not first:
        return None
    step, loss = first[0]
    if abs(loss - chance) < max(t.INITIAL_LOSS_TOLERANCE * chance, t.INITIAL_LOSS_FLOOR):
        return None
    return Finding(
        "suspicious_initial_loss",
        f"the first training loss {fmt(loss)} ({'step 1' if step == 1 else f'steps 1-{step}'})"
        f" is {fmt(loss / chance)}x the "
        f"loss of guessing among {ctx.facts.num_classes} classes, ln {ctx.facts.num_classes} = "
        f"{fmt(chance)}: the network starts with large, confident outputs",
        since_step=step, data={"initial_loss": loss, "chance_loss": chance},
        actions=a.non_none(a.standardize(ctx.facts), a.init_for_activations(ctx.facts),
                           a.lower_lr(ctx.facts)),
    )


def stuck_at_chance(ctx: Context) -> Finding | None:
    """From STUCK_SHARE of the run on: the loss (validation when there is one) within
    CHANCE_LOSS_TOLERANCE of ln C and the accuracy at most chance + CHANCE_ACCURACY_MARGIN."""
    chance = ctx.facts.chance_loss
    if chance is None or not ctx.past_warmup(t.STUCK_SHARE):
        return None
    split = "val" if ctx.series.latest("val_loss") is not None else "train"
    loss = ctx.series.latest(f"{split}_loss")
    accuracy = ctx.series.latest(f"{split}_accuracy")
    if loss is None or accuracy is None:
        return None
    if abs(loss - chance) > t.CHANCE_LOSS_TOLERANCE * chance or not ctx.at_chance():
        return None
    facts = ctx.facts
    actions = a.relu_instead(facts) or a.non_none(a.init_for_activations(facts),
                                                  a.standardize(facts))
    if not actions:
        actions = a.non_none(a.raise_lr(facts, 3.0))
    return Finding(
        "stuck_at_chance",
        f"{split}_loss {fmt(loss)} is the loss of guessing, ln {facts.num_classes} = "
        f"{fmt(chance)}, and {split}_accuracy {fmt(accuracy)} is chance (1/{facts.num_classes}"
        f" = {fmt(1 / facts.num_classes)}) at step {ctx.step}, {round(100 * ctx.share_done())}% "
        "into the run: the network has learnt nothing",
        data={"loss": loss, "accuracy": accuracy, "chance_loss": chance}, actions=actions)
