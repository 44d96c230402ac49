"""The job's diagnosis as the API serves it: typed, so that the OpenAPI document says what a
finding holds, and read defensively from the summary the worker writes (summary["diagnosis"],
the shape in the diagnosis contract), so that one malformed finding never makes
`GET /v1/jobs/{id}` fail: it is left out and logged, and the rest are served."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

log = logging.getLogger(__name__)

SUMMARY_KEY = "diagnosis"


class ActionOut(BaseModel):
    """A concrete change to the job spec: set `field` to `value`."""

    field: str = Field(description="the spec field to change, as a dotted path, e.g. "
                       "`optimizer.lr` or `model.init`")
    value: Any = Field(description="the value to set it to (any JSON value, e.g. 0.001 or "
                       '{"type": "he_normal"})')
    why: str = Field(description="why this change should help, in a sentence")


class FindingOut(BaseModel):
    """One thing the rules found wrong with the training, with the numbers it rests on."""

    name: str = Field(description="a stable snake_case name: divergence, "
                      "suspicious_initial_loss, stuck_at_chance, lr_too_high, lr_too_low, "
                      "vanishing_gradients, exploding_gradients, dead_units, saturation, "
                      "overfitting, underfitting, noisy_loss, unnormalized_inputs, ...")
    severity: Literal["error", "warning", "info"] = Field(
        description="`error`: the run failed because of it (e.g. divergence); `warning`; "
        "`info`")
    since_step: int = Field(description="the first step the rule held")
    evidence: str = Field(description="the numbers and steps the finding rests on, in words")
    data: dict[str, int | float | None] = Field(
        default_factory=dict, description="the numbers the evidence names, by name")
    actions: list[ActionOut] = Field(
        default_factory=list, description="spec changes to try, the most useful first")


class DiagnosisOut(BaseModel):
    """What the rules read in the job's training so far: updated while it trains (at each
    evaluation), final once it has ended."""

    final: bool = Field(False, description="true once the run has ended")
    step: int = Field(0, description="the last step the rules looked at")
    findings: list[FindingOut] = Field(default_factory=list)


def raw_diagnosis(summary: dict[str, Any] | None) -> dict[str, Any]:
    """The diagnosis as the worker stored it; {} when there is none."""
    value = (summary or {}).get(SUMMARY_KEY)
    return value if isinstance(value, dict) else {}


def diagnosis_of(summary: dict[str, Any] | None) -> DiagnosisOut:
    """The job's diagnosis as served, from its summary."""
    return served_diagnosis(raw_diagnosis(summary))


def served_diagnosis(raw: dict[str, Any]) -> DiagnosisOut:
    """The stored diagnosis as served; the findings that do not fit the contract are left
    out."""
    findings = []
    for item in raw.get("findings") or []:
        try:
            findings.append(FindingOut.model_validate(_numbers_only(item)))
        except ValidationError as exc:
            log.warning("a diagnosis finding left out (%s): %s", str(exc).splitlines()[0], item)
    try:
        head = DiagnosisOut.model_validate({k: raw[k] for k in ("final", "step") if k in raw})
    except ValidationError:
        head = DiagnosisOut()
    return head.model_copy(update={"findings": findings})


def _numbers_only(item: Any) -> Any:
    """The finding with the entries of `data` that are not numbers left out (logged): a list
    or a string there costs the entry, not the whole finding."""
    data = item.get("data") if isinstance(item, dict) else None
    if not isinstance(data, dict):
        return item
    kept = {k: v for k, v in data.items()
            if v is None or (isinstance(v, int | float) and not isinstance(v, bool))}
    if len(kept) < len(data):
        log.warning("diagnosis finding %s: data entries that are not numbers left out: %s",
                    item.get("name"), sorted(set(data) - set(kept)))
    return item | {"data": kept}


def finding_count(summary: dict[str, Any] | None) -> int:
    """How many findings the stored diagnosis holds: what the job list carries of it."""
    findings = raw_diagnosis(summary).get("findings")
    return len(findings) if isinstance(findings, list) else 0


def without_diagnosis(summary: dict[str, Any] | None) -> dict[str, Any]:
    """The summary as served: the diagnosis has a field of its own (or, in lists, a count)."""
    summary = summary or {}
    if SUMMARY_KEY not in summary:
        return summary
    return {k: v for k, v in summary.items() if k != SUMMARY_KEY}
