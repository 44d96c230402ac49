"""The spec changes the rules suggest, each depending on what the spec already says: a
suggestion the spec already follows (clipping when it clips, standardising inputs that are
standardised) is never made."""

from __future__ import annotations

from core.diagnosis.facts import RELU_LIKE, SATURATING, RunFacts
from core.diagnosis.finding import Action, fmt

MAX_LR = 10.0  # the spec's bound on optimizer.lr


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def lower_lr(facts: RunFacts, factor: float = 10.0) -> Action:
    new = _round(facts.lr / factor)
    return Action("optimizer.lr", new,
                  f"a {fmt(factor)}x lower rate ({fmt(facts.lr)} -> {fmt(new)}) takes steps the "
                  "loss surface can follow")


def raise_lr(facts: RunFacts, factor: float = 10.0) -> Action | None:
    new = _round(min(MAX_LR, facts.lr * factor))
    if new <= facts.lr:
        return None
    return Action("optimizer.lr", new,
                  f"updates are tiny next to the weights; a {fmt(new / facts.lr)}x higher rate "
                  f"({fmt(facts.lr)} -> {fmt(new)}) moves them faster")


def add_warmup(facts: RunFacts) -> Action | None:
    if facts.warmup:
        return None
    length = max(1, round(0.05 * facts.total_steps)) if facts.total_steps else 100
    then = "cosine" if facts.schedule == "cosine" else "constant"
    return Action("schedule", {"type": "warmup", "warmup_length": length, "start_factor": 0.1,
                               "then": then, "unit": "step"},
                  f"a linear warm-up over the first {length} steps keeps the early, large "
                  "gradients from throwing the weights far")


def add_clip(facts: RunFacts) -> Action | None:
    if facts.clip:
        return None
    return Action("regularization.clip_grad", {"by": "norm", "max": 1.0},
                  "clipping the gradient norm to 1 bounds the size of any one step")


def standardize(facts: RunFacts) -> Action | None:
    if facts.normalize != "none":
        return None
    return Action("dataset.normalize", "standardize",
                  "inputs on very different scales make some weights' gradients dominate; "
                  "standardised features start the network in its working range")


def relu_instead(facts: RunFacts) -> list[Action]:
    """Each sigmoid/tanh hidden layer to relu, and He initialisation to go with it."""
    saturating = [path for path, kind in facts.activations if kind in SATURATING]
    actions = [Action(f"{path}.type", "relu",
                      "relu's gradient is 1 where it is active; sigmoid's is at most 0.25, and "
                      "the product over depth vanishes")
               for path in saturating]
    if actions and facts.init != "he_normal":
        actions.append(he_init())
    return actions


def he_init() -> Action:
    return Action("model.init", {"type": "he_normal"},
                  "He initialisation keeps ReLU activations' variance through depth")


def init_for_activations(facts: RunFacts) -> Action | None:
    kinds = facts.activation_types()
    if kinds & set(RELU_LIKE):
        return None if facts.init in ("he_normal", "he_uniform") else he_init()
    if kinds & set(SATURATING) and facts.init not in ("xavier_normal", "xavier_uniform"):
        return Action("model.init", {"type": "xavier_normal"},
                      "Xavier initialisation keeps sigmoid/tanh inputs in their linear range")
    return None


def leaky_relu_instead(facts: RunFacts, paths: list[str]) -> list[Action]:
    return [Action(f"{path}.type", "leaky_relu",
                   "a leaky ReLU passes a small gradient where it is inactive, so a unit can "
                   "come back") for path in paths]


def regularize(facts: RunFacts) -> list[Action]:
    actions = []
    if not facts.early_stopping:
        actions.append(Action("training.early_stopping",
                              {"monitor": "val_loss", "patience": 3, "restore_best": True},
                              "stop when the validation loss stops improving and keep the best "
                              "weights"))
    decay = _round(max(facts.weight_decay * 10, 1e-4))
    actions.append(Action("optimizer.weight_decay", decay,
                          "weight decay (L2) pulls the weights toward zero and the fit toward "
                          "simpler functions"))
    return actions


def non_none(*actions: Action | None) -> list[Action]:
    return [a for a in actions if a is not None]
