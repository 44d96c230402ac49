"""`traindock logs JOB [-f] [--attempt N] [--tail N]`: an attempt's log as its training
process wrote it (the start-up breakdown, warnings, a failed job's traceback); with -f, what
it writes next, until the attempt ends."""

from __future__ import annotations

import argparse
import sys
import time

from cli.jobref import resolve_job
from traindock.client import Client
from traindock.transport import Transport

POLL_S = 1.0
EXIT_INTERRUPTED = 130


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


def print_log(api: Transport, job_id: str, attempt: int | None, tail: int | None,
              follow: bool) -> int:
    """Copy the log to stdout as it arrives; the attempt it was."""
    with Client(transport=api).open_log(job_id, attempt, tail, follow) as log:
        if log.skipped and tail is None:
            print(f"(the first {log.skipped:,} bytes of this log are left out: it is longer "
                  "than the API sends at once)", file=sys.stderr, flush=True)
        for chunk in log:
            sys.stdout.buffer.write(chunk)
            if follow:
                sys.stdout.buffer.flush()
        sys.stdout.buffer.flush()
        return log.attempt


def run_logs(api: Transport, args: argparse.Namespace) -> int:
    job_id = resolve_job(api, args.job)
    try:
        if args.follow:
            wait_for_an_attempt(api, job_id)
        attempt = print_log(api, job_id, args.attempt, args.tail, args.follow)
        if args.follow:
            job = api.get(f"/v1/jobs/{job_id}")
            now = f", attempt {job['attempt']}" if job["attempt"] != attempt else ""
            print(f"-- attempt {attempt} is over; job state: {job['state']}{now}",
                  file=sys.stderr)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED  # quietly: the job goes on
    return 0
