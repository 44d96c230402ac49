"""A job's diagnosis as `show` and `watch` print it, above everything else: what the rules
found wrong with the training, the numbers they rest on, and the spec changes to try."""

from __future__ import annotations

import json
from typing import Any

INDENT = "  "


def action_text(action: dict[str, Any]) -> str:
    """`set optimizer.lr to 0.001: why`; the value as JSON, as it goes into the spec."""
    value = json.dumps(action.get("value"), separators=(", ", ": "))
    return f"set {action.get('field')} to {value}: {action.get('why')}"


def finding_lines(finding: dict[str, Any]) -> list[str]:
    head = (f"{finding.get('severity', 'warning'):<8} {finding.get('name')}  since step "
            f"{finding.get('since_step')}")
    lines = [INDENT + head, INDENT * 2 + str(finding.get("evidence", ""))]
    lines += [INDENT * 2 + action_text(action) for action in finding.get("actions") or []]
    return lines


def diagnosis_block(job: dict[str, Any]) -> str:
    """The findings, one paragraph each; "" when there is nothing to say: no finding yet on
    a job that has not ended, or a job whose training was never diagnosed (step 0)."""
    diagnosis = job.get("diagnosis") or {}
    findings = diagnosis.get("findings") or []
    step = diagnosis.get("step", 0)
    if not findings:
        if diagnosis.get("final") and step:
            return f"diagnosis  nothing found (the run's steps through {step} were read)"
        return ""
    count = f"{len(findings)} finding{'s' if len(findings) > 1 else ''}"
    status = "final" if diagnosis.get("final") else "so far"
    lines = [f"diagnosis  {count} at step {step} ({status}):"]
    for finding in findings:
        lines += finding_lines(finding)
    return "\n".join(lines)


def findings_key(job: dict[str, Any]) -> tuple:
    """What must change for `watch` to print the findings again: a finding that appears,
    goes, or changes severity; not its evidence, whose numbers move at every evaluation."""
    findings = (job.get("diagnosis") or {}).get("findings") or []
    return tuple((f.get("name"), f.get("severity"), f.get("since_step")) for f in findings)
