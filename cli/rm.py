"""`traindock rm JOB`: delete a job that has ended, with its metrics, checkpoints and logs."""

from __future__ import annotations

import argparse

from cli.jobref import resolve_job
from traindock.transport import Transport


def run_rm(api: Transport, args: argparse.Namespace) -> int:
    job_id = resolve_job(api, args.job)
    api.delete(f"/v1/jobs/{job_id}")  # a queued or running job: the API's 409 says to cancel
    print(f"deleted {job_id}")
    return 0
