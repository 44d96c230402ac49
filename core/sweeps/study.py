"""The Optuna study of a sweep, rebuilt from its trials on every call.

Why rebuild rather than keep Optuna's RDBStorage: the trials are our job rows, written in
the same transaction that decides them under the sweep's row lock (core/sweeps/driver.py).
With a second store (Optuna's tables) a process that died between writing one and the other
would leave a trial asked but never run, or run but never told; with one store there is
nothing to reconcile after a restart, and no trial can be asked twice. A sweep has at most
TRAINDOCK_MAX_SWEEP_JOBS trials, so rebuilding costs milliseconds.

Each ask gets a sampler seeded with the sweep's seed plus the trial's number: the same
history gives the same next configuration, whichever process asks."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState, create_trial

from core.sweeps import space
from core.sweeps.results import Trial
from core.sweeps.spec import SweepSpec

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger(__name__)

MIN_TRIALS_FOR_IMPORTANCE = 4


def _study(spec: SweepSpec, trials: list[Trial], sampler: optuna.samplers.BaseSampler | None,
           dists: dict[str, BaseDistribution], with_unfinished: bool) -> optuna.Study:
    direction = "minimize" if spec.objective.direction == "min" else "maximize"
    study = optuna.create_study(direction=direction, sampler=sampler)
    for trial in trials:
        params = space.to_internal(spec, trial.params)
        if trial.value is not None:
            study.add_trial(create_trial(params=params, distributions=dists, value=trial.value))
        elif not with_unfinished:
            continue
        elif trial.state == "pruned":
            # As Optuna records a pruned trial: its last report, which TPE ranks below every
            # completed trial, the shorter-lived ones lowest.
            study.add_trial(create_trial(state=TrialState.PRUNED, params=params,
                                         distributions=dists,
                                         intermediate_values=_last_report(trial)))
        elif trial.ended:
            study.add_trial(create_trial(state=TrialState.FAIL, params=params,
                                         distributions=dists))
        else:
            study.add_trial(create_trial(state=TrialState.RUNNING, params=params,
                                         distributions=dists))
    return study


def _last_report(trial: Trial) -> dict[int, float]:
    pruned = trial.pruned or {}
    step, value = pruned.get("step"), pruned.get("value")
    if isinstance(step, int) and isinstance(value, int | float):
        return {step: float(value)}
    return {}


def next_params(spec: SweepSpec, trials: list[Trial], number: int) -> dict[str, Any]:
    """The values of trial `number`: the grid's point `number`, or what the sampler asks for
    given every earlier trial (running ones included: TPE's constant liar keeps parallel asks
    apart)."""
    if spec.method == "grid":
        return space.grid_point(spec, number)
    dists = space.distributions(spec)
    seed = spec.seed + number
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = (optuna.samplers.RandomSampler(seed=seed) if spec.method == "random"
                   else optuna.samplers.TPESampler(seed=seed, constant_liar=True))
    study = _study(spec, trials, sampler, dists, with_unfinished=True)
    asked = study.ask(dists)
    return space.from_internal(spec, asked.params)


def importances(spec: SweepSpec, trials: list[Trial]) -> dict[str, float] | None:
    """Optuna's parameter importances over the completed trials; None with one parameter or
    fewer than MIN_TRIALS_FOR_IMPORTANCE completed trials, or when the evaluator cannot tell
    (every trial has the same value)."""
    done = [t for t in trials if t.value is not None]
    if len(spec.parameters) < 2 or len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    study = _study(spec, done, None, space.distributions(spec), with_unfinished=False)
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=spec.seed)
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception as exc:  # the evaluators raise several kinds on degenerate histories
        log.info("no parameter importances for this sweep: %s", exc)
        return None
    return {name: float(value) for name, value in found.items()}
