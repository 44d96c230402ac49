"""`traindock logs JOB [-f] [--attempt N] [--tail N]`: an attempt's log as its training
process wrote it (the start-up breakdown, warnings, a failed job's traceback); with -f, what
it writes next, until the attempt ends."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import httpx

from cli.jobref import resolve_job
from traindock.transport import TIMEOUT_S, Transport

POLL_S = 1.0
EXIT_INTERRUPTED = 130
# A followed attempt may print nothing for minutes (a long epoch): no read timeout then.
FOLLOW_TIMEOUT = httpx.Timeout(TIMEOUT_S, read=None)


def wait_for_an_attempt(api: Transport, job_id: str) -> None:
    """Return once the job has started an attempt, or has ended without one."""
    said = False
    while True:
        job = api.get(f"/v1/jobs/{job_id}")
        if job["attempt"] > 0 or job["state"] != "queued":
            return
        if not said:
            print("queued: waiting for a worker to start it (Ctrl-C to stop waiting)",
                  file=sys.stderr, flush=True)
            said = True
        time.sleep(POLL_S)


def print_log(api: Transport, job_id: str, params: dict[str, Any], follow: bool) -> int:
    """Copy the log to stdout as it arrives; the attempt it was."""
    timeout = FOLLOW_TIMEOUT if follow else TIMEOUT_S
    with api.stream(f"/v1/jobs/{job_id}/logs", timeout=timeout, **params) as response:
        start = int(response.headers.get("X-Log-Start", "0"))
        if start and "tail" not in params:
            print(f"(the first {start:,} bytes of this log are left out: it is longer than "
                  "the API sends at once)", file=sys.stderr, flush=True)
        for chunk in response.iter_bytes():
            sys.stdout.buffer.write(chunk)
            if follow:
                sys.stdout.buffer.flush()
        sys.stdout.buffer.flush()
        return int(response.headers["X-Log-Attempt"])


def run_logs(api: Transport, args: argparse.Namespace) -> int:
    job_id = resolve_job(api, args.job)
    params: dict[str, Any] = {}
    if args.attempt is not None:
        params["attempt"] = args.attempt
    if args.tail is not None:
        params["tail"] = args.tail
    if args.follow:
        params["follow"] = "true"
    try:
        if args.follow:
            wait_for_an_attempt(api, job_id)
        attempt = print_log(api, job_id, params, args.follow)
        if args.follow:
            job = api.get(f"/v1/jobs/{job_id}")
            now = f", attempt {job['attempt']}" if job["attempt"] != attempt else ""
            print(f"-- attempt {attempt} is over; job state: {job['state']}{now}",
                  file=sys.stderr)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED  # quietly: the job goes on
    return 0
