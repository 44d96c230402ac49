"""The SweepSpec: a base JobSpec, the spec paths to vary and how, the search method, the
objective, the budget. Pure data; core/sweeps/check.py checks it against the server and
against every trial spec it can produce."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, StrictBool, model_validator

from core.specs.job import JobSpec
from core.specs.metrics import better_direction
from models.strict import StrictModel


class Parameter(StrictModel):
    """How one spec path varies: exactly one of `values` (each tried by a grid, picked from by
    random and tpe), `choices` (the same, for whole objects such as an optimizer section) or
    a range `low`..`high` (both included; a grid needs `step` for a float range and takes
    every integer of an int range without one)."""

    values: list[Any] | None = Field(None, min_length=1, max_length=1000,
                                     description="e.g. [0.1, 0.01, 0.001]")
    choices: list[Any] | None = Field(
        None, min_length=1, max_length=1000,
        description="e.g. [{\"type\": \"sgd\", \"lr\": 0.1}, {\"type\": \"adam\"}]")
    low: float | None = Field(None, description="a range's smallest value")
    high: float | None = Field(None, description="a range's largest value")
    log: StrictBool = Field(False, description="sample the range on a log scale (low > 0)")
    type: Literal["int", "float"] = Field("float", description="int: whole numbers only")
    step: float | None = Field(None, gt=0, description="the range's values: low, low+step, ...")

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        ranged = self.low is not None or self.high is not None
        kinds = [k for k, given in (("values", self.values is not None),
                                    ("choices", self.choices is not None),
                                    ("low/high", ranged)) if given]
        if len(kinds) != 1:
            raise ValueError("give exactly one of values, choices, or low and high (given: "
                             f"{', '.join(kinds) or 'none'})")
        if ranged and (self.low is None or self.high is None):
            raise ValueError("a range needs both low and high")
        if not ranged and (self.log or self.step is not None or self.type != "float"):
            raise ValueError("log, step and type belong to a range (low and high)")
        return self

    @property
    def listed(self) -> list[Any] | None:
        """The listed values or choices; None for a range."""
        return self.values if self.values is not None else self.choices


class ObjectiveSpec(StrictModel):
    metric: str = Field("val_loss", max_length=100,
                        description="a metric the trials record: val_loss, val_accuracy, "
                        "test_accuracy, ...")
    mode: Literal["min", "max"] | None = Field(
        None, description="null: max for accuracies, min for losses "
        "(core/specs/metrics.better_direction)")
    at: Literal["best", "final"] = Field(
        "best", description="the metric's best value over the run, or its last; a test_ "
        "metric is measured once, at the end")

    @property
    def direction(self) -> Literal["min", "max"] | None:
        return self.mode or better_direction(self.metric)


class BudgetSpec(StrictModel):
    trials: int | None = Field(
        None, ge=1, description="configurations to try (each runs `repeats` jobs); a grid's "
        "default is every point, random and tpe need it")
    max_minutes: float | None = Field(
        None, gt=0, le=60 * 24 * 30,
        description="start no trial this long after the sweep was created; running ones end")


PRUNERS = ("none", "median", "successive_halving", "hyperband")
# The knobs each pruner takes; one given to a pruner that has no use for it is refused.
PRUNER_KNOBS: dict[str, tuple[str, ...]] = {
    "none": (),
    "median": ("n_startup_trials", "n_warmup_steps"),
    "successive_halving": ("min_resource", "reduction_factor"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
}


class PrunerSpec(StrictModel):
    """Stopping a trial whose objective, at an evaluation, is already worse than the other
    trials' were at that step (core/sweeps/prune.py, with Optuna's own pruners). A knob left
    out takes Optuna's default."""

    type: Literal["none", "median", "successive_halving", "hyperband"] = Field(
        "none", description="none: every trial runs to its end; median: Optuna's "
        "MedianPruner; successive_halving: SuccessiveHalvingPruner; hyperband: HyperbandPruner")
    n_startup_trials: int | None = Field(
        None, ge=0, le=10_000, description="median: prune nothing until this many trials "
        "completed (Optuna's default 5)")
    n_warmup_steps: int | None = Field(
        None, ge=0, description="median: prune no trial before this training step (default 0)")
    min_resource: int | None = Field(
        None, ge=1, description="successive_halving, hyperband: the training step of the first "
        "rung (default: successive_halving estimates it from the first completed trial, "
        "hyperband takes 1)")
    max_resource: int | None = Field(
        None, ge=1, description="hyperband: the steps a full trial trains (default: estimated "
        "from the completed trials)")
    reduction_factor: int | None = Field(
        None, ge=2, le=100, description="successive_halving, hyperband: keep the best "
        "1/reduction_factor of the trials at each rung (defaults 4 and 3)")

    @model_validator(mode="after")
    def _knobs_of_its_type(self) -> PrunerSpec:
        allowed = PRUNER_KNOBS[self.type]
        # Given and not null: a stored spec lists every knob, null where not given.
        foreign = sorted(name for name in self.model_fields_set - {"type"}
                         if name not in allowed and getattr(self, name) is not None)
        if foreign:
            takes = ", ".join(allowed) if allowed else "no knobs"
            raise ValueError(f"{', '.join(foreign)} is not a knob of the {self.type} pruner "
                             f"(it takes {takes})")
        if (self.type == "hyperband" and self.min_resource is not None
                and self.max_resource is not None and self.max_resource < self.min_resource):
            raise ValueError(f"max_resource {self.max_resource} is below min_resource "
                             f"{self.min_resource}")
        return self

    @property
    def knobs(self) -> dict[str, int]:
        """The knobs given, as Optuna's pruner takes them."""
        return {name: getattr(self, name) for name in PRUNER_KNOBS[self.type]
                if getattr(self, name) is not None}


class SweepSpec(StrictModel):
    name: str = Field("", max_length=150, description="a label; defaults to the base's name")
    base: JobSpec = Field(description="the job every trial starts from")
    parameters: dict[str, Parameter] = Field(
        description="dotted spec paths (`optimizer.lr`, `model.layers[2].p`, `optimizer`) and "
        "the values each takes")
    method: Literal["grid", "random", "tpe"] = Field(
        "tpe", description="grid: every combination; random: Optuna's RandomSampler; tpe: "
        "Optuna's TPESampler")
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec,
                                     description="what makes one trial better than another")
    budget: BudgetSpec = Field(default_factory=BudgetSpec, description="how many trials")
    parallelism: int = Field(2, ge=1, le=64, description="trials queued or running at once")
    repeats: int = Field(1, ge=1, le=20,
                         description="jobs per configuration, with training.seed = the base's "
                         "seed + 0, 1, ...; the objective is their mean")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="the sampler's seed")
    pruner: PrunerSpec = Field(
        default_factory=PrunerSpec,
        description="stop trials early whose objective is worse than the others' at the same "
        "step (docs/sweeps.md, \"Stopping bad trials early\"); default: none")

    @property
    def display_name(self) -> str:
        return self.name or f"{self.base.display_name}-sweep"
