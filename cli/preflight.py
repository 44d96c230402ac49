"""`traindock show JOB --preflight`: the checks run before the job's first step
(summary.preflight, written by the worker's preflight) as a table, with the findings and the
spec changes they suggest."""

from __future__ import annotations

import json
from typing import Any

from cli.format import render_table


def format_preflight(summary: dict[str, Any] | None) -> str:
    report = (summary or {}).get("preflight")
    if not report:
        return ("no preflight report: the job has not reached its first step yet, or its "
                "spec turned the preflight off (preflight.enabled false)")
    rows = [[c["name"], c["verdict"], f"{c['seconds']:.2f}"] for c in report["checks"]]
    table = render_table(["check", "verdict", "seconds"], rows, right=[2]).splitlines()
    lines = [f"preflight {report['verdict']} in {report['seconds']:.2f} s "
             f"(budget {report['time_budget_s']:g} s):", table[0]]
    # The evidence is a sentence or two with its numbers: under its row, not in a column.
    for row, check in zip(table[1:], report["checks"], strict=True):
        lines += [row, f"    {check['evidence']}"]
    for finding in report.get("findings") or []:
        lines += ["", f"{finding['severity']}: {finding['name']}"]
        for action in finding.get("actions") or []:
            lines.append(f"  try {action['field']} = {json.dumps(action['value'])}: "
                         f"{action['why']}")
    return "\n".join(lines)
