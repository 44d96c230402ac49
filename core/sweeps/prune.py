"""Whether a trial's job should stop at an evaluation: Optuna's own pruner, asked on a study
rebuilt from the sweep's jobs and their objective points in PostgreSQL.

The study is rebuilt as core/sweeps/study.py rebuilds the sampler's, for the same reason (the
job rows are the one record). Each job is one Optuna trial, numbered in (trial_number,
trial_repeat) order, so that a job keeps its number, and with it its Hyperband bracket, from
one rebuild to the next. The pruners keep state in the trials (successive halving records
the value each trial reached at each rung), so rebuilding means replaying: every other job's
reports go through the pruner in that order, each ended job is told how it ended, and then
the asking job's own reports, the last of which is the question. Nothing here decides by
hand; the pruner does, and the message only explains its answer.

Cost: reports x jobs, each a fraction of a millisecond; a sweep's jobs are bounded by
TRAINDOCK_MAX_SWEEP_JOBS and an evaluation asks once (tests/test_pruning.py times it).
"""

from __future__ import annotations

import statistics
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.sweeps.results import objective_value
from core.sweeps.spec import PrunerSpec, SweepSpec
from core.tables import FINAL_STATES, Job, Metric, MetricKey, Sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)

_PRUNERS = {
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
}


@dataclass(frozen=True)
class Pruned:
    """The pruner's answer, when it is yes: where, on what value, and why in words."""

    step: int
    metric: str
    value: float
    pruner: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "metric": self.metric, "value": self.value,
                "pruner": self.pruner, "reason": self.reason}


def build_pruner(spec: PrunerSpec) -> optuna.pruners.BasePruner:
    if spec.type == "none":
        return optuna.pruners.NopPruner()
    return _PRUNERS[spec.type](**spec.knobs)


def pruner_of(session: Session, job: Job) -> SweepSpec | None:
    """The sweep spec of a trial job whose sweep prunes; None for any other job."""
    if job.sweep_id is None:
        return None
    sweep = session.get(Sweep, job.sweep_id)
    if sweep is None:
        return None
    spec = SweepSpec.model_validate(sweep.spec)
    return spec if spec.pruner.type != "none" else None


def should_prune(session: Session, job: Job, step: int, value: float) -> Pruned | None:
    """Ask the sweep's pruner about `job`, which reported its objective `value` at `step`.
    None: train on (a job of no sweep, a sweep without a pruner, or the pruner says so)."""
    spec = pruner_of(session, job)
    if spec is None:
        return None
    jobs = list(session.scalars(select(Job).where(Job.sweep_id == job.sweep_id)
                                .order_by(Job.trial_number, Job.trial_repeat)))
    reports = objective_reports(session, [j.id for j in jobs], spec.objective.metric)
    own = {s: v for s, v in reports.get(job.id, {}).items() if s < step}
    own[step] = float(value)
    reports[job.id] = own
    direction = spec.objective.direction or "min"
    study = optuna.create_study(
        study_name=f"sweep-{job.sweep_id}", pruner=build_pruner(spec.pruner),
        direction="minimize" if direction == "min" else "maximize",
        sampler=optuna.samplers.RandomSampler(seed=0))  # asks nothing: its trials are given
    trials = {j.id: study.ask() for j in jobs}  # numbered in job order, asked trial included
    for other in jobs:
        if other.id == job.id:
            continue
        trial = trials[other.id]
        _replay(trial, reports.get(other.id, {}))
        _tell(study, trial, other, spec)
    if job.id not in trials:  # a job the sweep does not list: nothing to compare it with
        return None
    if not _replay(trials[job.id], own):
        return None
    return Pruned(step, spec.objective.metric, float(value), spec.pruner.type,
                  explain(spec, study, step, own))


def objective_reports(session: Session, job_ids: list[uuid.UUID], metric: str
                      ) -> dict[uuid.UUID, dict[int, float]]:
    """Each job's points of the objective metric, step -> value, from one query."""
    reports: dict[uuid.UUID, dict[int, float]] = defaultdict(dict)
    if not job_ids:
        return reports
    rows = session.execute(
        select(Metric.job_id, Metric.step, Metric.value)
        .join(MetricKey, MetricKey.id == Metric.key_id)
        .where(MetricKey.name == metric, Metric.job_id.in_(job_ids))
        .order_by(Metric.job_id, Metric.step))
    for job_id, step, value in rows:
        reports[job_id][int(step)] = float(value)
    return reports


def _replay(trial: optuna.Trial, reports: dict[int, float]) -> bool:
    """Report each point in step order and ask the pruner at each, as a live trial would
    have; returns the last answer."""
    answer = False
    for step in sorted(reports):
        trial.report(reports[step], step)
        answer = trial.should_prune()
    return answer


def _tell(study: optuna.Study, trial: optuna.Trial, job: Job, spec: SweepSpec) -> None:
    """An ended job's end: completed with its objective, pruned, or failed (failed, cancelled,
    or succeeded without the objective). A queued or running job stays running."""
    if job.state not in FINAL_STATES:
        return
    if job.state == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
        return
    value = objective_value(job.summary, spec.objective) if job.state == "succeeded" else None
    if value is None:
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, value)


def explain(spec: SweepSpec, study: optuna.Study, step: int, own: dict[int, float]) -> str:
    """Why the pruner said stop, in the user's terms."""
    metric, value = spec.objective.metric, own[step]
    pruner = spec.pruner
    where = f"pruned at step {step}: {metric} {value:.4g}"
    if pruner.type == "median":
        minimize = (spec.objective.direction or "min") == "min"
        best = min(own.values()) if minimize else max(own.values())
        at_step = [t.intermediate_values[step] for t in study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,)) if step in t.intermediate_values]
        mine = f" (its best so far {best:.4g})" if best != value else ""
        if not at_step:
            return f"{where}{mine} was worse than the median of the completed trials"
        return (f"{where}{mine} was worse than the median {statistics.median(at_step):.4g} "
                f"of the {len(at_step)} completed trial(s) at that step")
    keep = pruner.reduction_factor or (4 if pruner.type == "successive_halving" else 3)
    name = pruner.type.replace("_", " ")
    return (f"{where} was not among the best 1/{keep} of the trials that reached this rung "
            f"({name} pruner)")
