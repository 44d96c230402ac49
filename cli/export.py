"""`traindock export JOB --format onnx|pt2|safetensors`: a checkpoint as a file that runs
without traindock (docs/models.md), checked against its sha256 before it is kept."""

from __future__ import annotations

import argparse

from cli.jobref import resolve_job
from traindock.exports import save_export
from traindock.transport import Transport


def run_export(api: Transport, args: argparse.Namespace) -> int:
    job_id = resolve_job(api, args.job)
    path = save_export(api, job_id, args.format, args.checkpoint, args.output, args.force)
    print(path)
    return 0
