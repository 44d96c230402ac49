"""The base of every spec object, in models/ and core/specs/ alike."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Every spec object rejects fields it does not know: a typo must not pass silently."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
