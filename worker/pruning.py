"""Stopping a sweep's trial early: after each evaluation of the sweep's objective, ask the
sweep's pruner (core/sweeps/prune.py) whether this trial is worth training on.

When the answer is no, the callback keeps the pruner's account in summary.pruned and raises
TrialPruned from on_points. It comes last in the child's callbacks, so the metric sink has
the evaluation's points by then; the loop's way out (on_exit) flushes them with the summary,
lets a checkpoint being written finish, and marks the diagnosis final. The child records the
reason as the job's `error` and exits with EXIT_PRUNED, which the supervisor turns into the
state `pruned`. The training loop (worker/train.py) knows nothing of any of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from core.db import Database
from core.sweeps.spec import SweepSpec
from core.tables import Job, Sweep
from worker.callbacks import Summary
from worker.state import LoopState, Point

log = logging.getLogger(__name__)

Ask = Callable[[int, float], dict[str, Any] | None]  # (step, value) -> summary.pruned, or None


class TrialPruned(Exception):
    """The sweep's pruner stopped this trial at an evaluation; the message says why."""


class PruneCallback:
    def __init__(self, metric: str, ask: Ask, summary: Summary) -> None:
        self.metric = metric
        self.ask = ask
        self.summary = summary

    def on_points(self, state: LoopState, points: list[Point]) -> None:
        if state.total_steps and state.step >= state.total_steps:
            return  # the last evaluation: the trial has trained to its end, it completes
        for point in points:
            if point.name != self.metric:
                continue
            pruned = self.ask(point.step, point.value)
            if pruned is not None:
                self.summary.add_report("pruned", pruned)
                raise TrialPruned(pruned["reason"])

    def on_epoch_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        pass

    def on_train_end(self, state: LoopState, metrics: dict[str, float]) -> None:
        pass

    def on_preempt(self, state: LoopState) -> None:
        pass


def trial_pruning(db: Database, job: Job, summary: Summary, flush: Callable[[], None]
                  ) -> PruneCallback | None:
    """The callback for a trial of a sweep with a pruner; None for any other job. `flush`
    writes the buffered points (the metric sink's flush_all): the pruner reads this trial's
    reports from PostgreSQL, as it reads the others'."""
    if job.sweep_id is None:
        return None
    with db.read() as session:
        sweep = session.get(Sweep, job.sweep_id)
        document = sweep.spec if sweep is not None else None
    if document is None:
        return None
    spec = SweepSpec.model_validate(document)
    if spec.pruner.type == "none":
        return None
    # Here rather than at the top: it imports Optuna (a quarter of a second), which only a
    # trial of a pruning sweep needs.
    from core.sweeps.prune import should_prune

    def ask(step: int, value: float) -> dict[str, Any] | None:
        flush()  # a lost lease or a database gone for good stops the job here, as anywhere
        try:
            with db.read() as session:
                row = session.get(Job, job.id)
                pruned = should_prune(session, row, step, value) if row is not None else None
        except (SQLAlchemyError, ValueError, RuntimeError) as exc:
            # The question is worth less than the run: train on, and ask at the next one.
            log.warning("could not ask the sweep's pruner at step %d: %s", step, exc)
            return None
        if pruned is None:
            return None
        log.info("%s", pruned.reason)
        return pruned.as_dict()

    return PruneCallback(spec.objective.metric, ask, summary)
