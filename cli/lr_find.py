"""`traindock lr-find SPEC`: run a learning-rate range test on a training spec and print the
rate it suggests. The spec is submitted as it is with `mode: "lr_find"` (and the options'
`lr_find` settings), watched as `traindock watch` does, and its report read back from
summary.lr_find and the `lr_find/loss` series (docs/lr_find.md)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from cli.client import read_spec
from cli.format import render_table
from cli.http import ApiError
from cli.watch import EXIT_INTERRUPTED, follow
from traindock.transport import Transport

RULES = ("valley", "steep", "minimum")
SKIP_END = 5  # as core/lr_find.py leaves out of the suggestions (the client imports no server code)
TABLE_ROWS = 16  # rows of the loss-against-rate table
BAR_WIDTH = 30
SPARKS = "▁▂▃▄▅▆▇█"


def range_test_spec(spec: Any, args: argparse.Namespace) -> dict:
    """The spec in mode lr_find, with the options over its own lr_find settings."""
    if not isinstance(spec, dict):
        raise ApiError([f"{args.spec}: a job spec is a JSON object"])
    settings = dict(spec.get("lr_find") or {})
    for option, key in (("rule", "suggestion"), ("start_lr", "start_lr"),
                        ("end_lr", "end_lr"), ("steps", "steps")):
        if getattr(args, option) is not None:
            settings[key] = getattr(args, option)
    return {**spec, "mode": "lr_find", **({"lr_find": settings} if settings else {})}


def run_lr_find(api: Transport, args: argparse.Namespace) -> int:
    """0 when the test ends with a suggestion; 1 when the job fails or the curve is too short
    to suggest one; 130 on Ctrl-C (the job goes on)."""
    job = api.post("/v1/jobs", range_test_spec(read_spec(args.spec), args))
    short = job["id"][:8]
    print(f"range test {job['id']} ({job['progress'].get('total_steps')} steps)",
          file=sys.stderr, flush=True)
    try:
        job = follow(api, job["id"], sys.stderr)
    except KeyboardInterrupt:
        print(f"stopped watching; the range test goes on. `traindock show {short}` shows its "
              f"summary.lr_find when it ends, `traindock cancel {short}` cancels it.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    report = (job.get("summary") or {}).get("lr_find")
    if job["state"] != "succeeded" or report is None:
        print(f"error: the range test {short} {job['state']}"
              + (f": {job['error']}" if job.get("error") else ""), file=sys.stderr)
        return 1
    series = api.get(f"/v1/jobs/{job['id']}/metrics", names="lr_find/loss,lr",
                     max_points=100_000)["series"]
    lrs = series.get("lr", {}).get("value", [])
    losses = series.get("lr_find/loss", {}).get("value", [])
    print(report_text(job, report, lrs, losses))
    return 0 if report.get("suggested_lr") is not None else 1


def report_text(job: dict, report: dict, lrs: list[float], losses: list[float]) -> str:
    """The suggestion with its rule, the other rules beside it, why the test stopped, and the
    curve as a sparkline and a table of loss against rate."""
    rule, suggested = report["rule"], report.get("suggested_lr")
    lines = [f"job       {job['id']}  {job['name']}",
             f"points    {report['points']}, {report['stopped']}"]
    if suggested is None:
        lines.append(f"no suggestion: {report.get('note', 'too few points')}")
    else:
        others = "  ".join(f"{name} {_rate(report['suggestions'][name])}"
                           for name in RULES if name != rule)
        lines.append(f"suggested learning rate: {_rate(suggested)} ({rule}); {others}")
    if lrs and len(lrs) == len(losses):
        lines += ["", f"loss  {sparkline(losses)}",
                  f"      {_rate(lrs[0])} .. {_rate(lrs[-1])} (log scale)", "",
                  curve_table(lrs, losses, report.get("suggestions") or {})]
    return "\n".join(lines)


def loss_scale(values: list[float]) -> tuple[float, float]:
    """The losses drawn from bottom to top: the lowest to the highest before the last
    SKIP_END points, so that the blow-up which stopped the test does not flatten the rest
    (it is drawn at the top, and marked ">" in the table)."""
    body = values[:-SKIP_END] if len(values) > 2 * SKIP_END else values
    low = min(values)
    return low, max(max(body), low + 1e-12)


def sparkline(values: list[float], width: int = 60) -> str:
    """The curve in block characters, `width` points at most, scaled by loss_scale."""
    picked = [values[round(i * (len(values) - 1) / (width - 1))]
              for i in range(min(width, len(values)))] if len(values) > 1 else values
    low, high = loss_scale(values)
    top = len(SPARKS) - 1
    return "".join(SPARKS[min(top, max(0, round((v - low) / (high - low) * top)))]
                   for v in picked)


def curve_table(lrs: list[float], losses: list[float], suggestions: dict[str, Any]) -> str:
    """About TABLE_ROWS rows spread evenly along the test, with a bar for the loss (scaled as
    the sparkline, by loss_scale) and each rule's suggestion marked on the row of the
    nearest rate."""
    n = len(lrs)
    rows_at = sorted({round(i * (n - 1) / (TABLE_ROWS - 1)) for i in range(TABLE_ROWS)}
                     if n > 1 else {0})
    marks: dict[int, list[str]] = {}
    for name in RULES:
        rate = suggestions.get(name)
        if rate:
            nearest = min(rows_at, key=lambda i: abs(math.log(lrs[i]) - math.log(rate)))
            marks.setdefault(nearest, []).append(name)
    low, high = loss_scale(losses)
    rows = []
    for i in rows_at:
        share = (losses[i] - low) / (high - low)
        bar = "#" * max(1, round(min(share, 1.0) * BAR_WIDTH)) + (">" if share > 1 else "")
        rows.append([_rate(lrs[i]), f"{losses[i]:.4g}", bar,
                     ("<- " + ", ".join(marks[i])) if i in marks else ""])
    return render_table(["lr", "loss", "", ""], rows, right=(1,))


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"
