"""`traindock metrics JOB`: the latest value of every metric, or with --csv every point."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli.format import format_value, render_table
from cli.http import EXIT_REFUSED
from cli.jobref import resolve_job
from traindock.transport import Transport


def read_latest(api: Transport, job_id: str, names: str | None) -> dict[str, Any]:
    """The metrics response with every series cut to its last point. A series longer than
    max_points comes back downsampled to the last point of each step range, so with
    max_points=1 it is its very last point."""
    params: dict[str, Any] = {"max_points": 1}
    if names:
        params["names"] = names
    return api.get(f"/v1/jobs/{job_id}/metrics", **params)


def latest_points(response: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per metric, its last point."""
    return {name: {key: s[key][-1] for key in ("step", "epoch", "value")}
            for name, s in response["series"].items() if s["step"]}


def not_logged_message(api: Transport, job_id: str, names: str | None,
                       response: dict[str, Any]) -> str | None:
    """Why names asked for have no point: the job has not started, has not logged them yet,
    or never will (a typo); with the names it does have. None when every name has points."""
    asked = [n.strip() for n in (names or "").split(",") if n.strip()]
    missing = ", ".join(n for n in asked if not response["series"].get(n, {}).get("step"))
    if not missing:
        return None
    state = api.get(f"/v1/jobs/{job_id}")["state"]
    if state == "queued":
        return f"no points of {missing}: the job is queued and has not started"
    logged = api.get(f"/v1/jobs/{job_id}/metrics/names")["names"]
    has = f"it has {', '.join(logged)}" if logged else "it has logged none"
    if state == "running":
        return f"{missing}: not logged yet by this running job; so far {has}"
    return f"unknown metric name(s) for this {state} job: {missing}; {has}"


def stream_csv(api: Transport, job_id: str, names: str | None) -> None:
    params = {"names": names} if names else {}
    with api.stream(f"/v1/jobs/{job_id}/metrics.csv", **params) as response:
        for chunk in response.iter_bytes():
            sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()


def run_metrics(api: Transport, args: argparse.Namespace) -> int:
    job_id = resolve_job(api, args.job)
    response = read_latest(api, job_id, args.names)
    problem = not_logged_message(api, job_id, args.names, response)
    if args.csv:
        if problem:  # a partial CSV would pass for the whole answer
            print(problem, file=sys.stderr)
            return EXIT_REFUSED
        stream_csv(api, job_id, args.names)
        return 0
    latest = latest_points(response)
    if latest:
        rows = [[name, format_value(p["value"]), str(p["step"]), str(p["epoch"])]
                for name, p in sorted(latest.items())]
        print(render_table(["metric", "latest", "step", "epoch"], rows, right=(1, 2, 3)))
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_REFUSED
    if not latest:
        state = api.get(f"/v1/jobs/{job_id}")["state"]
        print("no metric points yet: the job is queued and has not started" if state == "queued"
              else "no metric points yet" if state == "running"
              else f"this {state} job recorded no metrics", file=sys.stderr)
    return 0
