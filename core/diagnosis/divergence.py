"""divergence: the training loss became non-finite, or its smoothed value and the logged
value itself rose above DIVERGE_FACTOR times the smoothed loss's best (and above where it
started) at DIVERGE_POINTS consecutive logged points. Watched at every logged point, so
that the loop can stop the job there; the advice depends on the spec (docs/diagnosis.md)."""

from __future__ import annotations

import math

from core.diagnosis import actions as a
from core.diagnosis import thresholds as t
from core.diagnosis.facts import RunFacts
from core.diagnosis.finding import Action, Finding, fmt


class DivergenceWatch:
    """Fed every `train_loss_step` point; `update` returns a Finding the first time the
    smoothed loss has diverged, else None."""

    def __init__(self, facts: RunFacts) -> None:
        self.facts = facts
        self.count = 0
        self.average = 0.0
        self.first: float | None = None
        self.best = math.inf
        self.best_step = 0
        self.above = 0  # consecutive points above the bound
        self.since = 0
        self.reason = ""  # what diverged, for the job's error

    def smoothed(self) -> float:
        return self.average / (1 - t.DIVERGE_SMOOTHING ** self.count)

    def update(self, step: int, value: float) -> Finding | None:
        if not math.isfinite(value):
            self.reason = f"the training loss became {value}"
            return divergence_finding(self.facts, step, self.reason, {"loss": value})
        self.count += 1
        if self.first is None:
            self.first = value
        self.average = t.DIVERGE_SMOOTHING * self.average + (1 - t.DIVERGE_SMOOTHING) * value
        smoothed = self.smoothed()
        warm = self.count >= t.DIVERGE_MIN_POINTS and (
            not self.facts.total_steps or step >= t.WARMUP_SHARE / 2 * self.facts.total_steps)
        if smoothed < self.best:
            self.best, self.best_step = smoothed, step
        bound = max(t.DIVERGE_FACTOR * self.best, self.first)
        # The raw point too: the average remembers an early spike the run has recovered from.
        if not warm or not (smoothed > bound and value > bound):
            self.above = 0
            return None
        self.above += 1
        if self.above == 1:
            self.since = step
        if self.above < t.DIVERGE_POINTS:
            return None
        self.reason = reason = (f"the smoothed training loss rose to {fmt(smoothed)}, above "
                  f"{fmt(t.DIVERGE_FACTOR)}x its best {fmt(self.best)} (step {self.best_step}) "
                  f"and above its first value {fmt(self.first)}, from step {self.since} on")
        return divergence_finding(self.facts, step, reason, {
            "smoothed_loss": smoothed, "best_loss": self.best, "best_step": self.best_step,
            "first_loss": self.first})


def divergence_actions(facts: RunFacts) -> list[Action]:
    return a.non_none(a.lower_lr(facts), a.add_warmup(facts), a.add_clip(facts),
                      a.standardize(facts))


def divergence_finding(facts: RunFacts, step: int, reason: str,
                       data: dict[str, float]) -> Finding:
    return Finding("divergence", f"{reason} at step {step} (optimizer.lr {fmt(facts.lr)})",
                   severity="error", since_step=step, data={"step": step, **data},
                   actions=divergence_actions(facts))


def advice(facts: RunFacts) -> str:
    """The divergence actions as a sentence, for the job's error."""
    parts = []
    for action in divergence_actions(facts):
        if action.field == "optimizer.lr":
            parts.append(f"lower the learning rate (optimizer.lr) from {fmt(facts.lr)} to "
                         f"{fmt(action.value)}")
        elif action.field == "schedule":
            parts.append(f"add a warm-up (schedule: warmup over "
                         f"{action.value['warmup_length']} steps)")
        elif action.field == "regularization.clip_grad":
            parts.append("clip gradients (regularization.clip_grad: {\"by\": \"norm\", "
                         "\"max\": 1.0})")
        elif action.field == "dataset.normalize":
            parts.append("standardize the inputs (dataset.normalize: standardize; it is none)")
    return ", ".join(parts[:-1]) + (", or " if len(parts) > 1 else "") + parts[-1]


def diverged_message(facts: RunFacts, step: int, reason: str) -> str:
    """The job's error: "diverged at step N: <what> ; <advice>"."""
    return f"diverged at step {step}: {reason}; {advice(facts)}"
