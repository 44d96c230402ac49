"""A sweep's search space two ways: the grid's points in a fixed order, and Optuna's
distributions for its samplers. Lists of values and choices are categorical over their
*indices* in Optuna: choices may be whole objects (an optimizer section), which Optuna's
categorical distribution does not hold, and an index names the same value on every rebuild."""

from __future__ import annotations

import itertools
import math
from typing import Any, NoReturn

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from core.sweeps.spec import Parameter, SweepSpec


def field_of(path: str) -> str:
    return f'parameters["{path}"]'


def _refuse(path: str, message: str) -> NoReturn:
    # models.build imports torch, which a worker's own process (whose reaper advances sweeps
    # through this module) never needs: only a refused parameter pays for it.
    from models.build import SpecError

    raise SpecError(field_of(path), message)


def options(param: Parameter) -> list[Any] | None:
    """The listed values of a values or choices parameter; None for a range."""
    return param.listed


def check_range(path: str, param: Parameter) -> None:
    if param.low > param.high:
        _refuse(path, f"low {param.low} is above high {param.high}; swap them")
    if param.log and param.low <= 0:
        _refuse(path, f"a log range needs low above 0 (it is {param.low})")
    if param.log and param.step is not None:
        _refuse(path, "give either log or step, not both (Optuna samples a log range "
                        "without steps)")
    if param.type == "int":
        for name in ("low", "high", "step"):
            value = getattr(param, name)
            if value is not None and value != int(value):
                _refuse(path, f"{name} {value} is not a whole number; an int range "
                                "takes whole numbers (or use type float)")


def range_points(path: str, param: Parameter) -> list[int | float]:
    """A range's grid: every step from low to high (an int range steps by 1 by default)."""
    check_range(path, param)
    if param.type == "int":
        step = int(param.step or 1)
        if param.log and param.step is None:
            _refuse(path, "a grid cannot enumerate a log range; give the "
                            "values to try as {\"values\": [...]}")
        return list(range(int(param.low), int(param.high) + 1, step))
    if param.step is None:
        _refuse(path, "a grid needs the points of a float range: give a step, "
                        "or the values to try as {\"values\": [...]}")
    count = math.floor((param.high - param.low) / param.step + 1e-9) + 1
    return [round(param.low + i * param.step, 12) for i in range(count)]


def grid_values(spec: SweepSpec) -> dict[str, list[Any]]:
    return {path: options(p) if options(p) is not None else range_points(path, p)
            for path, p in spec.parameters.items()}


def grid_size(spec: SweepSpec) -> int:
    return math.prod(len(values) for values in grid_values(spec).values())


def grid_point(spec: SweepSpec, number: int) -> dict[str, Any]:
    """The grid's `number`th point, in the order itertools.product gives: trial n is point n,
    so that a restarted driver neither repeats nor skips one."""
    values = grid_values(spec)
    point = next(itertools.islice(itertools.product(*values.values()), number, None))
    return dict(zip(values, point, strict=True))


def distributions(spec: SweepSpec) -> dict[str, BaseDistribution]:
    """Optuna's distribution for each path (a grid's values as categorical indices too, so
    that parameter importances can be asked of any sweep)."""
    grid = grid_values(spec) if spec.method == "grid" else {}
    out: dict[str, BaseDistribution] = {}
    for path, param in spec.parameters.items():
        listed = grid.get(path) or options(param)
        if listed is not None:
            out[path] = CategoricalDistribution(list(range(len(listed))))
        elif param.type == "int":
            out[path] = IntDistribution(int(param.low), int(param.high), log=param.log,
                                        step=int(param.step or 1))
        else:
            out[path] = FloatDistribution(param.low, param.high, log=param.log, step=param.step)
    return out


def to_internal(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's values as Optuna holds them: indices for listed values."""
    grid = grid_values(spec) if spec.method == "grid" else {}
    out = {}
    for path, value in params.items():
        listed = grid.get(path) or options(spec.parameters[path])
        out[path] = listed.index(value) if listed is not None else value
    return out


def from_internal(spec: SweepSpec, internal: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for path, value in internal.items():
        listed = options(spec.parameters[path])
        out[path] = listed[value] if listed is not None else value
    return out
