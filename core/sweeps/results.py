"""A sweep's trials as read from its jobs: each configuration's repeats, their objective
values, mean and standard deviation, and the best configuration. Pure: the driver decides with
it and the API shows it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.sweeps.spec import ObjectiveSpec
from core.tables import FINAL_STATES


@dataclass
class TrialJob:
    id: str
    repeat: int
    state: str
    value: float | None
    seed: int | None
    duration_s: float | None
    best: float | None = None  # the objective's metric: its best value over the run
    final: float | None = None  # and its last one (a test_ metric has one value: both)
    # A pruned job: the step it stopped at, the objective it reported there, and why
    # (summary.pruned, written by the training process).
    pruned: dict[str, Any] | None = None


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    jobs: list[TrialJob] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return all(job.state in FINAL_STATES for job in self.jobs)

    @property
    def values(self) -> list[float]:
        return [job.value for job in self.jobs if job.value is not None]

    @property
    def pruned(self) -> dict[str, Any] | None:
        """The first pruned repeat's summary.pruned (step, value, reason); None if none was."""
        return next((job.pruned for job in sorted(self.jobs, key=lambda j: j.repeat)
                     if job.state == "pruned" and job.pruned), None)

    @property
    def value(self) -> float | None:
        """The mean over the repeats that produced a value; None until every repeat ended, and
        for a pruned trial (its values stop short of the others': they do not rank)."""
        values = self.values
        if not values or not self.ended or any(j.state == "pruned" for j in self.jobs):
            return None
        return statistics.fmean(values)

    @property
    def std(self) -> float | None:
        """The sample standard deviation over the repeats (n - 1); None under two values."""
        values = self.values
        return statistics.stdev(values) if len(values) > 1 and self.value is not None else None

    @property
    def state(self) -> str:
        states = {job.state for job in self.jobs}
        if "running" in states:
            return "running"
        if "queued" in states:
            return "queued"
        if "pruned" in states:
            return "pruned"
        if self.value is not None:
            return "succeeded"
        return "cancelled" if states == {"cancelled"} else "failed"

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "params": self.params, "state": self.state,
                "value": self.value, "std": self.std, "values": self.values,
                "pruned": self.pruned,
                "jobs": [vars(job) for job in sorted(self.jobs, key=lambda j: j.repeat)]}


def objective_value(summary: dict[str, Any] | None, objective: ObjectiveSpec) -> float | None:
    """The job's objective from its summary: a test_ metric from `test`; otherwise the best
    value over the run (`best`) or the last one (`latest`), as `objective.at` says."""
    best, final = best_and_final(summary, objective.metric)
    return best if objective.at == "best" else final


def best_and_final(summary: dict[str, Any] | None, metric: str
                   ) -> tuple[float | None, float | None]:
    """The metric's best value over the run and its last one, from a job's summary; a test_
    metric is measured once, so it is both."""
    summary = summary or {}
    if metric.startswith("test_"):
        best = final = (summary.get("test") or {}).get(metric)
    else:
        best = ((summary.get("best") or {}).get(metric) or {}).get("value")
        final = (summary.get("latest") or {}).get(metric)
    return _number(best), _number(final)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _duration(started: datetime | None, finished: datetime | None) -> float | None:
    return (finished - started).total_seconds() if started and finished else None


def trials_of(jobs: list[Any], objective: ObjectiveSpec) -> list[Trial]:
    """Trials from job rows (with sweep_id, trial_number, trial_repeat, trial_params, state,
    summary, spec, started_at, finished_at), by number. A succeeded job has a value, and a
    pruned one the value it had when it stopped."""
    trials: dict[int, Trial] = {}
    for job in jobs:
        trial = trials.setdefault(job.trial_number, Trial(job.trial_number, job.trial_params))
        value = (objective_value(job.summary, objective)
                 if job.state in ("succeeded", "pruned") else None)
        seed = ((job.spec or {}).get("training") or {}).get("seed")
        best, final = best_and_final(job.summary, objective.metric)
        pruned = (job.summary or {}).get("pruned") if job.state == "pruned" else None
        trial.jobs.append(TrialJob(str(job.id), job.trial_repeat, job.state, value, seed,
                                   _duration(job.started_at, job.finished_at), best, final,
                                   pruned if isinstance(pruned, dict) else None))
    return [trials[n] for n in sorted(trials)]


def best_trial(trials: list[Trial], direction: str) -> Trial | None:
    scored = [t for t in trials if t.value is not None]
    if not scored:
        return None
    if direction == "min":  # ties: the earlier trial
        return min(scored, key=lambda t: (t.value, t.number))
    return max(scored, key=lambda t: (t.value, -t.number))


def best_summary(trial: Trial | None) -> dict[str, Any] | None:
    if trial is None:
        return None
    return {"trial_number": trial.number, "params": trial.params, "value": trial.value,
            "std": trial.std, "values": trial.values}
