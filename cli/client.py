"""Client verbs of the console script: they talk to the API over HTTP and nothing else."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx

FINAL_STATES = {"succeeded", "failed", "cancelled"}


def _read_spec(path: str) -> dict:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path}: not valid JSON ({exc})") from None


def _fail(response: httpx.Response) -> int:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text
    if isinstance(detail, list):
        for item in detail:
            print(f"error: {item.get('message', item)}", file=sys.stderr)
    else:
        print(f"error ({response.status_code}): {detail}", file=sys.stderr)
    return 1


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30)


def run_validate(args: argparse.Namespace) -> int:
    with _client(args.url) as http:
        response = http.post("/v1/jobs/validate", json=_read_spec(args.spec))
    if response.status_code != 200:
        return _fail(response)
    report = response.json()
    print(f"{'layer':<14}{'type':<12}{'output shape':<18}{'params':>10}")
    for layer in report["model"]["layers"]:
        shape = "x".join(str(d) for d in layer["output_shape"])
        print(f"{layer['name']:<14}{layer['type']:<12}{shape:<18}{layer['params']:>10,}")
    print(f"total parameters: {report['model']['total_params']:,}")
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    return 0


def run_submit(args: argparse.Namespace) -> int:
    with _client(args.url) as http:
        response = http.post("/v1/jobs", json=_read_spec(args.spec))
        if response.status_code not in (200, 201):
            return _fail(response)
        job = response.json()
        print(job["id"])
        if not args.wait:
            return 0
        while job["state"] not in FINAL_STATES:
            time.sleep(1)
            job = http.get(f"/v1/jobs/{job['id']}").json()
            progress = job["progress"]
            print(f"\r{job['state']:<10} epoch {progress.get('epoch', 0)}/"
                  f"{progress.get('epochs', '?')} step {progress.get('step', 0)}/"
                  f"{progress.get('total_steps', '?')}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        print(json.dumps({"state": job["state"], "summary": job["summary"],
                          "error": job["error"]}, indent=2))
        return 0 if job["state"] == "succeeded" else 1


def run_show(args: argparse.Namespace) -> int:
    with _client(args.url) as http:
        response = http.get(f"/v1/jobs/{args.job_id}")
    if response.status_code != 200:
        return _fail(response)
    print(json.dumps(response.json(), indent=2))
    return 0
