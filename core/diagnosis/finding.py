"""What a rule reports: a finding in the shape of summary["diagnosis"]["findings"][i]
(the diagnosis contract), and the spec change it suggests."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Action:
    field: str  # a JobSpec path: "optimizer.lr", "model.layers[1].type"
    value: Any  # JSON
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "value": self.value, "why": self.why}


@dataclass
class Finding:
    name: str
    evidence: str
    severity: Severity = "warning"
    since_step: int = 0
    data: dict[str, float] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        # JSON numbers only: the summary is JSONB, which holds no inf or NaN.
        data = {k: (v if math.isfinite(v) else None) for k, v in self.data.items()}
        return {"name": self.name, "severity": self.severity, "since_step": self.since_step,
                "evidence": self.evidence, "data": data,
                "actions": [a.as_dict() for a in self.actions]}


def fmt(value: float) -> str:
    """A number as evidence shows it: 3 significant digits, exponent when far from 1."""
    if value == 0 or not math.isfinite(value):
        return str(value)
    return f"{value:.3g}"
