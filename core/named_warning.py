"""A validation warning with a stable name: what a client can match on (`unnormalized_inputs`)
without parsing the message, the field it is about and the change that would silence it. The
same names are the ones a job's diagnosis uses for the same fault."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class NamedWarning:
    name: str  # stable, snake_case
    field: str  # the spec field it is about, e.g. dataset.normalize
    message: str  # what was seen, with its numbers, and why it matters
    suggestion: str  # the change, as `field: value`

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
