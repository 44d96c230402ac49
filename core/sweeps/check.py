"""Checking a SweepSpec before any trial starts: every path names something in the base spec,
and every trial spec the sweep can produce passes the same validation a submitted job does
(core/jobspec.validate_job): every point of a grid; for random and tpe each range's bounds and
each choice, one parameter at a time over the base. A failure names the parameter
(`parameters["model.layers[9].p"]`) and says what the job validation said."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from core.jobspec import DatasetLookup, ValidatedJob, validate_job
from core.settings import Settings
from core.specs.job import JobSpec
from core.sweeps import space
from core.sweeps.paths import PathError, get_path
from core.sweeps.spec import SweepSpec
from core.sweeps.trial_spec import trial_document
from models.build import SpecError, Where


@dataclass
class CheckedSweep:
    spec: SweepSpec  # its base names the dataset version validated (as a job's spec does)
    trials: int  # configurations to run, each `spec.repeats` jobs


def check_sweep(spec: SweepSpec, settings: Settings,
                lookup: DatasetLookup | None = None) -> CheckedSweep:
    if not spec.parameters and not (spec.method == "grid" and spec.repeats > 1):
        # No parameters is one configuration: a study of seeds, which needs repeats.
        raise SpecError("parameters", "give at least one spec path to vary, e.g. "
                        "{\"optimizer.lr\": {\"low\": 0.0001, \"high\": 0.1, \"log\": true}}"
                        ", or, to run one configuration over seeds, none with \"method\": "
                        "\"grid\" and \"repeats\" above 1")
    try:
        base = validate_job(spec.base, settings, lookup)
    except SpecError as error:
        raise SpecError(Where(f"base.{error.field}", error.kind), error.message) from None
    spec = spec.model_copy(update={"base": base.spec})
    document = base.spec.model_dump(mode="json")
    for path, param in spec.parameters.items():
        try:
            get_path(document, path)
        except PathError as error:
            raise SpecError(space.field_of(path), str(error)) from None
        if param.listed is None:
            space.check_range(path, param)
    _check_objective(spec, base)
    _check_pruner(spec, base)
    trials = _trials(spec, settings)
    for params in _points_to_check(spec, trials):
        check_trial(spec, document, params, settings, lookup)
    return CheckedSweep(spec, trials)


def _check_objective(spec: SweepSpec, base: ValidatedJob) -> None:
    metric = spec.objective.metric
    if spec.objective.direction is None:
        raise SpecError("objective.mode", f"{metric!r} has no better direction traindock "
                        "knows; give mode: min or max")
    if metric.startswith("val_") and not base.has_validation:
        raise SpecError("objective.metric", f"{metric!r} needs a validation split; set "
                        "base.dataset.val_fraction above 0, or use a train_ or test_ metric")
    if metric.startswith("test_") and not base.dataset.n_test:
        raise SpecError("objective.metric", f"{metric!r} needs a test split, and "
                        f"{base.dataset.name!r} has none; use a val_ metric")
    if not metric.startswith(("val_", "train_", "test_")):
        raise SpecError("objective.metric", f"{metric!r} is not a metric a job records for "
                        "each evaluation; use e.g. val_loss, val_accuracy or test_accuracy")


def _check_pruner(spec: SweepSpec, base: ValidatedJob) -> None:
    """A pruner needs the objective measured before the run's end: a test_ metric is measured
    once, at the end; a val_ metric at each evaluation; a train_ one at each epoch's end.
    Checked on the base spec: a parameter that changes the epochs or the evaluation steps
    changes what the trials report, not this check."""
    if spec.pruner.type == "none":
        return
    metric, training, plan = spec.objective.metric, base.spec.training, base.plan
    if metric.startswith("test_"):
        raise SpecError("pruner", f"{metric!r} is measured once, at the run's end: there is "
                        "nothing to prune on; use a val_ or train_ objective, or pruner "
                        "type none")
    if metric.startswith("val_"):
        if training.eval_every_steps:
            midway = training.eval_every_steps < plan.total_steps
        else:
            midway = training.eval_every_epochs < plan.epochs
        if not midway:
            raise SpecError("pruner", f"{metric!r} is evaluated only at the run's end "
                            f"({plan.epochs} epoch(s), {plan.total_steps} steps): set "
                            "base.training.eval_every_steps below the steps, or train more "
                            "epochs than eval_every_epochs, so that the trials can be "
                            "compared before they end")
    elif plan.epochs < 2:
        raise SpecError("pruner", f"{metric!r} is logged at each epoch's end, and the base "
                        "trains one epoch: train more epochs, or use a val_ objective with "
                        "base.training.eval_every_steps")


def _trials(spec: SweepSpec, settings: Settings) -> int:
    limit = settings.max_sweep_jobs
    if spec.method == "grid":
        size = space.grid_size(spec)
        if size == 0:
            raise SpecError("parameters", "the grid is empty: every parameter needs a value")
        trials = min(size, spec.budget.trials or size)
        where = "budget.trials" if spec.budget.trials else "parameters"
    else:
        if spec.budget.trials is None:
            raise SpecError("budget.trials", f"{spec.method} needs a number of trials, e.g. "
                            "\"budget\": {\"trials\": 20}")
        trials, where = spec.budget.trials, "budget.trials"
    if trials * spec.repeats > limit:
        raise SpecError(where, f"{trials} trials x {spec.repeats} repeats is "
                        f"{trials * spec.repeats} jobs; this server allows at most {limit} per "
                        "sweep (TRAINDOCK_MAX_SWEEP_JOBS): fewer trials or repeats")
    return trials


def _points_to_check(spec: SweepSpec, trials: int) -> list[dict[str, Any]]:
    if spec.method == "grid":
        return [space.grid_point(spec, n) for n in range(trials)]
    points = []
    for path, param in spec.parameters.items():
        listed = space.options(param)
        if listed is None:
            cast = int if param.type == "int" else float
            listed = [cast(param.low), cast(param.high)]
        points.extend({path: value} for value in listed)
    return points


def check_trial(spec: SweepSpec, document: dict[str, Any], params: dict[str, Any],
                settings: Settings, lookup: DatasetLookup | None, repeat: int | None = None,
                name: str | None = None) -> ValidatedJob:
    """The trial's spec (by default its last repeat's, the largest seed), validated as a
    submitted job's; a SpecError names the parameter."""
    repeat = spec.repeats - 1 if repeat is None else repeat
    candidate = trial_document(document, params, repeat, name or spec.display_name)
    try:
        return validate_job(JobSpec.model_validate(candidate), settings, lookup)
    except ValidationError as error:
        first = error.errors()[0]
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        field = field.lstrip(".")
        raise SpecError(_blame(params, field), f"{_show(params)} is refused: {field}: "
                        f"{first['msg']}") from None
    except SpecError as error:
        raise SpecError(_blame(params, error.field), f"{_show(params)} is refused: "
                        f"{error}") from None


def _blame(params: dict[str, Any], field: str) -> str:
    """The parameter an error at `field` comes from: the longest path it lies under, else
    the first parameter of the point."""
    under = [p for p in params if field == p or field.startswith((p + ".", p + "["))]
    return space.field_of(max(under, key=len) if under else next(iter(params)))


def _show(params: dict[str, Any]) -> str:
    return ", ".join(f"{path}={value!r}" for path, value in params.items())
