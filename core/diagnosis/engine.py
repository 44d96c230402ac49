"""The diagnosis engine: fed the run's metric points as the loop emits them, it watches for
divergence at every logged training loss and runs the other rules at each check (an
evaluation or an epoch's end). A rule is reported once it has held at `persist` consecutive
checks, with the step of the first of them; it leaves the report when it stops holding, so
that the report says what is wrong now (a divergence stays: the run ended on it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.diagnosis import thresholds as t
from core.diagnosis.context import Context
from core.diagnosis.divergence import DivergenceWatch, divergence_finding
from core.diagnosis.facts import RunFacts
from core.diagnosis.finding import Finding
from core.diagnosis.fit import overfitting, underfitting
from core.diagnosis.gradients import exploding_gradients, vanishing_gradients
from core.diagnosis.initial_loss import stuck_at_chance, suspicious_initial_loss
from core.diagnosis.learning_rate import lr_too_high, lr_too_low
from core.diagnosis.noise import noisy_loss
from core.diagnosis.series import Series
from core.diagnosis.units import dead_units, saturation

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Rule:
    check: Callable[[Context], Finding | None]
    persist: int = t.PERSIST_CHECKS


# One-shot and already-windowed rules need no persistence of their own.
RULES = [
    Rule(suspicious_initial_loss, persist=1),
    Rule(stuck_at_chance),
    Rule(lr_too_high),
    Rule(lr_too_low, persist=1),
    Rule(vanishing_gradients),
    Rule(exploding_gradients),
    Rule(dead_units),
    Rule(saturation),
    Rule(overfitting),
    Rule(underfitting),
    Rule(noisy_loss),
]


class Diagnosis:
    def __init__(self, facts: RunFacts, rules: list[Rule] | None = None) -> None:
        self.facts = facts
        self.rules = RULES if rules is None else rules
        self.series = Series()
        self.watch = DivergenceWatch(facts)
        self.checks = 0
        self.step = 0
        self.held: dict[str, tuple[int, int]] = {}  # rule -> (consecutive checks, first step)
        self.findings: dict[str, Finding] = {}
        self.diverged: Finding | None = None

    def add(self, name: str, step: int, value: float) -> Finding | None:
        """One metric point. Returns the divergence finding when this point diverged."""
        self.series.add(name, step, value)
        self.step = max(self.step, step)
        if name == "train_loss_step" and self.diverged is None:
            found = self.watch.update(step, value)
            if found is not None:
                self.diverged = found
                return found
        return None

    def diverge(self, step: int, reason: str, data: dict[str, float] | None = None) -> Finding:
        """The loop found a non-finite loss itself (a validation loss, a step before the
        log window)."""
        if self.diverged is None:
            self.diverged = divergence_finding(self.facts, step, reason, data or {})
        self.step = max(self.step, step)
        return self.diverged

    def check(self, step: int | None = None) -> list[Finding]:
        """Run the rules at a check; returns the findings reported now."""
        self.checks += 1
        if step is not None:
            self.step = max(self.step, step)
        ctx = Context(self.series, self.facts, self.step, self.checks)
        for rule in self.rules:
            found = rule.check(ctx)
            name = rule.check.__name__
            if found is None:
                self.held.pop(name, None)
                self.findings.pop(name, None)
                continue
            count, since = self.held.get(name, (0, self.step))
            count += 1
            self.held[name] = (count, since)
            if count >= rule.persist:
                found.since_step = min(found.since_step or since, since)
                self.findings[name] = found
        return self.current()

    def current(self) -> list[Finding]:
        found = list(self.findings.values())
        if self.diverged is not None:
            found = [self.diverged] + found
        return sorted(found, key=lambda f: (SEVERITY_ORDER[f.severity], f.since_step))

    def report(self, final: bool = False) -> dict[str, Any]:
        """summary["diagnosis"] as the contract shapes it."""
        return {"final": final, "step": self.step,
                "findings": [f.as_dict() for f in self.current()]}
