"""`preflight`: checks run on a copy of the network before its first step, so that a run that
cannot learn says so in seconds rather than after its epochs (docs/training.md, Preflight)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool, field_validator

from models.strict import StrictModel

PreflightCheck = Literal["initial_loss", "gradcheck", "overfit_small_batch"]
PREFLIGHT_CHECKS: tuple[str, ...] = ("initial_loss", "gradcheck", "overfit_small_batch")


class PreflightSpec(StrictModel):
    enabled: StrictBool = Field(
        True, description="run the checks before training; false: train at once"
    )
    checks: list[PreflightCheck] = Field(
        default_factory=lambda: list(PREFLIGHT_CHECKS), min_length=1,
        description="which checks, run in this order: initial_loss (the loss at "
        "initialisation against that of an uninformed prediction), gradcheck (autograd "
        "against numerical gradients on 8 samples), overfit_small_batch (the spec's optimizer "
        "must fit 16 samples within 300 steps)",
    )
    time_budget_s: float = Field(
        10.0, gt=0.0, le=600.0,
        description="wall-clock seconds the checks may take together; a check the budget "
        "cannot finish is skipped, or stopped and reported 'warn'",
    )
    stop_on_fail: StrictBool = Field(
        False, examples=[True],
        description="fail the job, naming the check, when a check fails; false: record the "
        "report and train anyway",
    )

    @field_validator("checks")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} is listed more than once; list each "
                             "check once")
        return value
