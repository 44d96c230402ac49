"""`traindock metrics JOB`: the latest value of every metric, or with --csv every point."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli.format import format_value, render_table
from cli.http import Api
from cli.jobref import resolve_job


def latest_points(api: Api, job_id: str, names: str | None) -> dict[str, dict[str, Any]]:
    """Per metric, its last point. A series longer than max_points comes back downsampled to
    the last point of each step range, so with max_points=1 it is its very last point."""
    params: dict[str, Any] = {"max_points": 1}
    if names:
        params["names"] = names
    series = api.get(f"/v1/jobs/{job_id}/metrics", **params)["series"]
    return {name: {key: s[key][-1] for key in ("step", "epoch", "value")}
            for name, s in series.items() if s["step"]}


def stream_csv(api: Api, job_id: str, names: str | None) -> None:
    params = {"names": names} if names else {}
    with api.stream(f"/v1/jobs/{job_id}/metrics.csv", **params) as response:
        for chunk in response.iter_bytes():
            sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


def run_metrics(api: Api, args: argparse.Namespace) -> int:
    job_id = resolve_job(api, args.job)
    if args.csv:
        stream_csv(api, job_id, args.names)
        return 0
    latest = latest_points(api, job_id, args.names)
    if not latest:
        print("no metric points yet", file=sys.stderr)
        return 0
    rows = [[name, format_value(p["value"]), str(p["step"]), str(p["epoch"])]
            for name, p in sorted(latest.items())]
    print(render_table(["metric", "latest", "step", "epoch"], rows, right=(1, 2, 3)))
    return 0
