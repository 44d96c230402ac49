"""`python -m inference.export_child`: exports checkpoints in a process of its own.

Reads JSON requests, one a line, on stdin: {"located": Located.as_dict(), "format": "onnx",
"path": ...}; writes each file (atomically) and answers each with one JSON line on stdout:
{"ok": {"size": n, "step": n}} or {"error": {"field", "message", "status"}}. It exits at the
end of its input. The API keeps one running while exports come (api/export_runner.py), so
that only the first export pays for importing the exporters, and kills it at a deadline;
building and tracing a network never runs in the API's own process."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import torch

from inference.card import model_card
from inference.exports import UnsupportedLayer, export
from inference.job_bundle import Located, load_located


def run(request: dict[str, Any]) -> dict[str, Any]:
    located = Located.from_dict(request["located"])
    bundle = load_located(located)
    card = model_card(bundle, located.job_id, located.sha256)
    path = Path(request["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        size = export(bundle, card, request["format"], path)
    except UnsupportedLayer as exc:
        return {"error": {"field": exc.field, "message": str(exc), "status": 422}}
    return {"ok": {"size": size, "step": bundle.step}}


def serve(lines, out) -> None:
    for line in lines:
        if not line.strip():
            continue
        try:
            answer = run(json.loads(line))
        except Exception as exc:  # answered, and logged on stderr: the next request goes on
            traceback.print_exc(file=sys.stderr)
            answer = {"error": {"field": None, "status": 500,
                                "message": f"the export failed: {type(exc).__name__}: {exc}"}}
        out.write(json.dumps(answer) + "\n")
        out.flush()


def main() -> None:
    torch.set_num_threads(1)
    # Answers go to the original stdout; whatever the exporters print goes to stderr, so that
    # it cannot be taken for an answer.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin, answers)


if __name__ == "__main__":
    main()
