"""What to change in the spec when a preflight check fails: concrete fields and values, most
useful first, each with why (the `actions` of a finding in the diagnosis contract). They are
read from the spec, so the advice names the layer to change rather than a general remedy."""

from __future__ import annotations

from typing import Any

import torch

from core.jobspec import JobSpec

FIXED_SCALE_INITS = ("normal", "uniform", "constant")  # a scale that ignores the layer's fan-in
HEAVY_DROPOUT = 0.5
TINY_LR = 1e-5
HEAVY_WEIGHT_DECAY = 0.01


def _action(field: str, value: Any, why: str) -> dict[str, Any]:
    return {"field": field, "value": value, "why": why}


def last_projection(spec: JobSpec) -> tuple[int, Any] | None:
    """The index and spec of the last top-level layer with an `init` (linear, conv, maxout):
    the one whose scale sets the outputs' at initialisation."""
    for index in range(len(spec.model.layers) - 1, -1, -1):
        layer = spec.model.layers[index]
        if "init" in type(layer).model_fields:
            return index, layer
    return None


def heavy_dropout(spec: JobSpec) -> list[tuple[int, float]]:
    """(index, p) of the top-level dropout layers with p of HEAVY_DROPOUT or more."""
    return [(index, layer.p) for index, layer in enumerate(spec.model.layers)
            if "dropout" in layer.type and getattr(layer, "p", 0.0) >= HEAVY_DROPOUT]


def initial_loss_actions(spec: JobSpec, task: str, y: torch.Tensor) -> list[dict[str, Any]]:
    # Training-mode dropout scales the kept units by 1 / (1 - p): 10x at p 0.9.
    actions = [_action(f"model.layers[{index}].p", 0.1,
                       f"dropout {p:g} multiplies the units it keeps by {1 / (1 - p):.3g}, and "
                       "the outputs with them") for index, p in heavy_dropout(spec)]
    last = last_projection(spec)
    model_init = spec.model.init.type
    if last is not None:
        index, layer = last
        scheme = (layer.init or spec.model.init).type
        if scheme in FIXED_SCALE_INITS:
            actions.append(_action(
                f"model.layers[{index}].init", {"type": "xavier_normal"},
                f"the last layer's {scheme} draw ignores its fan-in; Xavier scales it by the "
                "fan-in, so the outputs start near 0 and the loss near the uninformed one"))
        else:
            actions.append(_action(
                f"model.layers[{index}].init", {"type": "normal", "std": 0.01},
                "a small last layer starts every output near 0, so the loss starts near the "
                "uninformed one (cs231n: initialise the last layer small)"))
        one_output = y.dim() == 1 or y.shape[1] == 1
        targets = y.float()
        offset = one_output and float(targets.mean().abs()) >= float(targets.std())
        if task == "regression" and offset and getattr(layer, "bias", False):
            mean = round(float(targets.mean()), 6)
            actions.append(_action(
                f"model.layers[{index}].bias_init", {"type": "constant", "value": mean},
                f"the outputs then start at the targets' mean ({mean:g}) instead of near 0"))
    if model_init in FIXED_SCALE_INITS:
        actions.append(_action(
            "model.init", {"type": "he_normal"},
            f"model.init {model_init} ignores each layer's fan-in; He keeps the activations' "
            "scale through the layers"))
    if spec.dataset.normalize == "none":
        actions.append(_action(
            "dataset.normalize", "standardize",
            "unscaled inputs scale the outputs, and the loss, by their own size"))
    return actions


def overfit_actions(spec: JobSpec, lr: float, data: dict[str, float]) -> list[dict[str, Any]]:
    """For a network that could not fit 16 samples: a rate too small to move, dropout or
    a penalty too heavy to fit through, else a rate to try."""
    actions = []
    default_lr = type(spec.optimizer).model_fields["lr"].default
    if lr <= TINY_LR and default_lr > lr:
        actions.append(_action(
            "optimizer.lr", default_lr,
            f"at {lr:g} the weights barely move: the loss is still "
            f"{data['loss_share']:.0%} of where it started after {data['steps']} steps; "
            f"{default_lr:g} is {spec.optimizer.type}'s usual rate"))
    for index, p in heavy_dropout(spec):
        in_eval = (f"; with dropout off it reached {data['eval_accuracy']:.0%}"
                   if "eval_accuracy" in data else "")
        actions.append(_action(
            f"model.layers[{index}].p", 0.1,
            f"dropping {p:.0%} of the units at every step keeps the network from fitting even "
            f"16 samples{in_eval}"))
    weight_decay = getattr(spec.optimizer, "weight_decay", 0.0)
    if weight_decay >= HEAVY_WEIGHT_DECAY:
        actions.append(_action("optimizer.weight_decay", 0.0001,
                               f"weight decay {weight_decay:g} pulls the weights to 0 faster "
                               "than 16 samples pull them apart"))
    if spec.regularization.l1 > 0:
        actions.append(_action("regularization.l1", 0.0,
                               "the L1 penalty may outweigh the fit to 16 samples"))
    if not actions:
        rose = data["loss_share"] >= 1.0
        value = lr / 10 if rose else lr * 10
        actions.append(_action(
            "optimizer.lr", float(f"{value:.3g}"),
            "the loss rose: a smaller rate lets it descend" if rose else
            "the loss fell too slowly to fit 16 samples: a larger rate moves faster"))
    return actions
