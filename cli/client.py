"""Client verbs on a single job: validate, submit, show, cancel. Like every client verb they
talk to the API over HTTP and nothing else."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.findings import diagnosis_block
from cli.http import ApiError
from cli.jobref import resolve_job
from cli.preflight import format_preflight
from cli.startup import format_startup
from cli.watch import watch_to_end
from traindock.transport import Transport


def read_spec(path: str) -> dict:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise ApiError([f"cannot read the spec {path}: {exc.strerror}"]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError([f"{path}: not valid JSON ({exc})"]) from None


def run_validate(api: Transport, args: argparse.Namespace) -> int:
    shape = {"input_shape": args.input_shape} if args.input_shape else None
    report = api.post("/v1/jobs/validate", read_spec(args.spec), params=shape)
    model = report["model"]
    print(f"{'layer':<14}{'type':<12}{'output shape':<18}{'params':>10}{'fixed':>10}"
          f"{'FLOPs':>12}")
    for layer in model["layers"]:
        shape = "x".join(str(d) for d in layer["output_shape"])
        print(f"{layer['name']:<14}{layer['type']:<12}{shape:<18}{layer['params']:>10,}"
              f"{layer['non_trainable_params']:>10,}{layer['flops']:>12,}")
    print(f"total parameters: {model['total_params']:,} ({model['trainable_params']:,} "
          f"trainable); FLOPs per example: {model['total_flops']:,}")
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    return 0


def run_gradcheck(api: Transport, args: argparse.Namespace) -> int:
    """Exit 0 when every tensor's gradient is correct or worth a look, 1 otherwise."""
    report = api.post("/v1/gradcheck", read_spec(args.spec))
    print(f"{'tensor':<28}{'shape':<14}{'checked':>8}{'rel. error':>12}  verdict")
    for tensor in report["tensors"]:
        shape = "x".join(str(d) for d in tensor["shape"])
        print(f"{tensor['name']:<28}{shape:<14}{tensor['coordinates']:>8}"
              f"{tensor['relative_error']:>12.2e}  {tensor['verdict']}")
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"verdict: {report['verdict']}")
    return 0 if report["verdict"] in ("correct", "worth a look") else 1


def run_submit(api: Transport, args: argparse.Namespace) -> int:
    job = api.post("/v1/jobs", read_spec(args.spec))
    print(job["id"], flush=True)
    if not args.watch:
        return 0
    return watch_to_end(api, job["id"])


def run_show(api: Transport, args: argparse.Namespace) -> int:
    """The job as JSON on stdout; its findings above it on stderr, so that a terminal shows
    them first and `show JOB > job.json` or `| jq` still gets JSON alone."""
    job = api.get(f"/v1/jobs/{resolve_job(api, args.job)}")
    if args.startup:
        print(format_startup(job.get("startup")))
        return 0
    if args.preflight:
        print(format_preflight(job.get("summary")))
        return 0
    findings = diagnosis_block(job)
    if findings:
        print(findings + "\n", file=sys.stderr, flush=True)
    print(json.dumps(job, indent=2))
    return 0


def run_cancel(api: Transport, args: argparse.Namespace) -> int:
    job = api.post(f"/v1/jobs/{resolve_job(api, args.job)}/cancel")
    if job["state"] == "running":
        print("running: cancel requested; its worker stops it within about a second")
    else:
        print(job["state"])
    return 0
