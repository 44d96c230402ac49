"""`traindock ls`: the newest jobs as a table; jobs of one name told apart by their spec's digest
and the fields in which their specs differ."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.format import (
    format_age,
    format_duration,
    format_value,
    headline_metric,
    render_table,
    seconds_between,
)
from traindock.transport import Transport

HEADER = ["id", "name", "state", "epoch", "progress", "best", "age", "ran", "spec"]
SHOWN_DIFFERENCES = 3  # differing spec fields per row; the rest are counted


def differences(differs: dict[str, Any]) -> str:
    """`optimizer.lr=0.01 training.seed=1 (+2)`: what sets a job apart from the listed jobs of
    its name."""
    shown = [f"{path}={value if isinstance(value, str) else json.dumps(value)}"
             for path, value in list(differs.items())[:SHOWN_DIFFERENCES]]
    more = len(differs) - SHOWN_DIFFERENCES
    return " ".join(shown) + (f" (+{more})" if more > 0 else "")


def job_row(job: dict[str, Any]) -> list[str]:
    progress = job["progress"]
    total, step = progress.get("total_steps"), progress.get("step", 0)
    headline = headline_metric(job.get("summary") or {})
    ran = seconds_between(job["started_at"], job["finished_at"]) if job["started_at"] else None
    return [
        job["id"][:8],
        job["name"],
        job["state"],
        f"{progress.get('epoch', 0)}/{progress['epochs']}" if "epochs" in progress else "-",
        f"{min(1.0, step / total):.0%}" if total else "-",
        f"{headline[0]} {format_value(headline[1])}" if headline else "-",
        format_age(seconds_between(job["created_at"])),
        format_duration(ran),
        job.get("spec_digest", "-"),
    ]


def run_ls(api: Transport, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.state:
        params["state"] = args.state
    page = api.get("/v1/jobs", **params)
    if not page["items"]:
        print("no jobs" + (f" in state {args.state}" if args.state else ""), file=sys.stderr)
        return 0
    header, rows = HEADER, [job_row(job) for job in page["items"]]
    if any(job.get("differs") for job in page["items"]):  # jobs of one name: say how they differ
        header = [*HEADER, "differs"]
        rows = [[*row, differences(job.get("differs") or {})]
                for row, job in zip(rows, page["items"], strict=True)]
    print(render_table(header, rows, right=(3, 4, 6, 7)))
    if page["next_cursor"]:
        print(f"(the newest {len(page['items'])}; --limit N for more)", file=sys.stderr)
    return 0
