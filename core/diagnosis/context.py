"""What every rule is given at a check: the series, the facts, the step, and the shared
tests of the false-alarm control (warm-up, stalling)."""

from __future__ import annotations

from dataclasses import dataclass

from core.diagnosis import thresholds as t
from core.diagnosis.facts import RunFacts
from core.diagnosis.series import Series


@dataclass
class Context:
    series: Series
    facts: RunFacts
    step: int
    checks: int  # checks (epoch ends, evaluations) seen so far, this one included

    def share_done(self) -> float:
        total = self.facts.total_steps
        return self.step / total if total else 0.0

    def past_warmup(self, share: float = t.WARMUP_SHARE) -> bool:
        return self.checks >= t.WARMUP_CHECKS and self.share_done() >= share

    def epoch_losses(self) -> list[float]:
        return self.series.finite("train_loss")

    def first_loss(self) -> float | None:
        return self.series.first("train_loss_step")

    def at_chance(self) -> bool:
        """Accuracy no better than guessing, on validation when there is one."""
        chance = self.facts.chance_accuracy
        accuracy = self.series.latest("val_accuracy")
        if accuracy is None:
            accuracy = self.series.latest("train_accuracy")
        return chance is not None and accuracy is not None and \
            accuracy <= chance + t.CHANCE_ACCURACY_MARGIN

    def progress(self, checks: int = t.STALL_CHECKS) -> float | None:
        """Relative fall of the training loss over the last `checks` epoch values (0.1: it
        fell by 10%); None before there are that many."""
        losses = self.epoch_losses()
        if len(losses) <= checks:
            return None
        before, now = losses[-checks - 1], losses[-1]
        if before <= 0:
            return None
        return (before - now) / before

    def stalling(self) -> bool:
        """Learning has stalled: the loss fell less than STALL_PROGRESS over the last
        STALL_CHECKS epochs, or the accuracy is at chance."""
        progress = self.progress()
        return self.at_chance() or (progress is not None and progress < t.STALL_PROGRESS)
