"""`traindock predict JOB FILE|-`: a job's predictions for the rows of a file (.csv with a
header, .npz holding x, .png/.jpg images) or of JSON on standard input ({"inputs": ...},
{"rows": ...} or a bare list of rows), one line per row (docs/models.md#predict)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli.http import ApiError
from cli.jobref import resolve_job
from traindock.transport import Transport

FILE_SUFFIXES = (".csv", ".npz", ".png", ".jpg", ".jpeg")


def read_body(source: str) -> dict[str, Any]:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise ApiError([f"{source}: not JSON ({exc}); send {{\"inputs\": [[...]]}}, "
                        "{\"rows\": [{...}]} or a list of rows"]) from None
    return {"inputs": body} if isinstance(body, list) else body


def describe(prediction: dict[str, Any]) -> str:
    if "values" in prediction:
        return " ".join(f"{v:.6g}" for v in prediction["values"])
    probabilities = prediction.get("probabilities") or {}
    if "class" in prediction:
        return f"{prediction['class']}\t{probabilities.get(prediction['class'], 0):.4f}"
    return ",".join(prediction.get("labels") or []) or "(no label)"


def run_predict(api: Transport, args: argparse.Namespace) -> int:
    job_id = resolve_job(api, args.job)
    path = f"/v1/jobs/{job_id}/predict"
    params = {"checkpoint": args.checkpoint}
    source = args.input
    if source != "-" and Path(source).suffix.lower() in FILE_SUFFIXES:
        try:
            content = Path(source).read_bytes()
        except OSError as exc:
            raise ApiError([f"cannot read {source}: {exc.strerror}"]) from None
        answer = api.request("POST", path, params,
                             files={"file": (Path(source).name, content)}).json()
    else:
        try:
            body = read_body(source)
        except OSError as exc:
            raise ApiError([f"cannot read {source}: {exc.strerror}"]) from None
        answer = api.post(path, body, params=params)
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    for prediction in answer["predictions"]:
        print(describe(prediction))
    return 0
