"""The bodies of /v1/sweeps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from core.sweeps.results import Trial
from core.tables import Sweep
from models.strict import StrictModel


class TrialJobOut(BaseModel):
    id: str
    repeat: int = Field(description="which seed: training.seed = the base's seed + repeat")
    state: str
    value: float | None = Field(description="the objective, once the job succeeded; for a "
                                "pruned job, as it stood when it stopped")
    seed: int | None
    duration_s: float | None = Field(description="from its first start to its end")
    best: float | None = Field(None, description="the objective's metric: its best value over "
                               "the run so far (min or max as the metric improves)")
    final: float | None = Field(None, description="the objective's metric: its last value so "
                                "far (a test_ metric has one value: best and final alike)")
    pruned: dict[str, Any] | None = Field(
        None, description="a pruned job's step, metric, value, pruner and reason "
        "(its summary.pruned)")


class TrialOut(BaseModel):
    number: int
    params: dict[str, Any] = Field(description="the value of each swept path")
    state: str = Field(description="queued or running while a repeat is; pruned when the "
                       "sweep's pruner stopped a repeat; succeeded when a repeat produced the "
                       "objective; else failed or cancelled")
    value: float | None = Field(description="the mean objective over the repeats that produced "
                                "it, once every repeat ended; null for a pruned trial, which "
                                "does not rank")
    std: float | None = Field(description="their sample standard deviation (n - 1); null "
                              "under two values")
    values: list[float] = Field(description="each repeat's objective, by repeat (a pruned "
                                "one's as it stood when it stopped)")
    pruned: dict[str, Any] | None = Field(
        None, description="where and why the pruner stopped it: the first pruned repeat's "
        "step, metric, value, pruner and reason")
    jobs: list[TrialJobOut]

    @classmethod
    def of(cls, trial: Trial) -> TrialOut:
        return cls(**trial.as_dict())


class SweepOut(BaseModel):
    id: str
    name: str
    owner: str
    state: str
    method: str
    objective: dict[str, Any] = Field(description="metric, mode (resolved) and at")
    trials_planned: int = Field(description="configurations the budget allows")
    trials_ended: int = Field(description="configurations whose every repeat has ended")
    repeats: int
    parallelism: int
    best: dict[str, Any] | None = Field(description="trial_number, params, value (mean), std "
                                        "and values of the best configuration so far")
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, sweep: Sweep, trials_ended: int) -> SweepOut:
        spec = sweep.spec
        objective = dict(spec.get("objective") or {})
        return cls(id=str(sweep.id), name=sweep.name, owner=sweep.owner, state=sweep.state,
                   method=spec["method"], objective=objective, trials_planned=sweep.trials,
                   trials_ended=trials_ended,
                   repeats=spec["repeats"], parallelism=spec["parallelism"], best=sweep.best,
                   error=sweep.error, created_at=sweep.created_at, finished_at=sweep.finished_at)


class SweepPage(BaseModel):
    items: list[SweepOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on "
                                    "the last")


class SweepDetail(SweepOut):
    spec: dict[str, Any]
    trials: list[TrialOut] = Field(description="by number; each with its repeats' jobs")
    best_spec: dict[str, Any] | None = Field(description="the best configuration's job spec "
                                             "(its first repeat's): what promote submits")
    importances: dict[str, float] | None = Field(
        description="Optuna's parameter importances (sum to 1); null with one parameter or "
        "under 4 completed trials. Computed when read (kept in the API process's memory per "
        "set of completed trials), never written")


class PromoteBody(StrictModel):
    epochs: int | None = Field(None, ge=1, description="train this many epochs instead of the "
                               "trials' own")
    name: str | None = Field(None, max_length=200, description="default: <sweep name>-best")
