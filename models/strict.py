"""The base of every spec object, in models/ and core/specs/ alike."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler


def _strict_numbers(node: Any) -> None:
    """Marks every int and float in a core schema strict: lax pydantic takes `true` for 1 and
    `"3"` for 3, so `"l1": false` passed as 0.0. Strict floats still take integers."""
    if isinstance(node, dict):
        if node.get("type") in ("int", "float"):
            node["strict"] = True
        for value in node.values():
            _strict_numbers(value)
    elif isinstance(node, list):
        for value in node:
            _strict_numbers(value)


class StrictModel(BaseModel):
    """Every spec object rejects fields it does not know: a typo must not pass silently. Its
    numbers are numbers, and its booleans (StrictBool) booleans: no `true` for 1, no 0 for
    false."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        schema = handler(source)
        _strict_numbers(schema)
        return schema
