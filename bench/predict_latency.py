"""Prediction latency: POST /v1/jobs/{id}/predict over HTTP against onnxruntime called directly
in this process on the same model, for the digits MLP and CNN.

A private stack (bench/stack.py) trains both jobs. Each model's best checkpoint is
exported as ONNX by GET /v1/jobs/{id}/export (the normalisation folded in) and onnxruntime
runs it in this process with one thread, as the prediction server
runs torch with one (TRAINDOCK_PREDICT_THREADS). Single row: a keep-alive httpx client sends
one digit at a time (JSON arrays), after a warm-up; batched: 256 rows per request. The floor
of the API itself is GET /v1/jobs/{id} on the same connection (routing, middlewares, one
indexed query), measured in the same run.

    python bench/predict_latency.py            # 1000 single-row requests per model
    python bench/predict_latency.py --quick    # 100, to prove it works
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import psutil
import torch
from report import header, median, p99, table
from stack import Stack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import datasets  # noqa: E402
from inference.bundle import load_bundle  # noqa: E402
from tests.conftest import load_example  # noqa: E402

BATCH = 256
WARMUP = 50


def spec(example: str, epochs: int) -> dict:
    job = load_example(example)
    job["training"]["epochs"] = epochs
    return job


def wait_succeeded(http: httpx.Client, job_id: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = http.get(f"/v1/jobs/{job_id}").json()["state"]
        if state == "succeeded":
            return
        if state in ("failed", "cancelled"):
            raise RuntimeError(f"job {job_id} {state}")
        time.sleep(0.5)
    raise TimeoutError(job_id)


def onnx_session(http: httpx.Client, job_id: str, folder: Path) -> ort.InferenceSession:
    """The job's best checkpoint as the ONNX file GET /v1/jobs/{id}/export gives a user
    (normalisation folded in), run by onnxruntime with one thread."""
    path = folder / f"{job_id}.onnx"
    response = http.get(f"/v1/jobs/{job_id}/export", params={"format": "onnx"}, timeout=300)
    if response.status_code == 200:
        path.write_bytes(response.content)
    else:  # export locally, as the export route does (inference/export_onnx.py)
        print(f"[bench] GET /export answered {response.status_code}; exporting here",
              file=sys.stderr)
        rows = http.get(f"/v1/jobs/{job_id}/checkpoints").json()
        row = next((r for r in rows if r["best"]), rows[-1])
        data = http.get(f"/v1/jobs/{job_id}/checkpoints/{row['id']}/download").content
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        bundle = load_bundle(payload, datasets.describe("digits"))
        torch.onnx.export(bundle.module, (torch.zeros(2, *bundle.input_shape),), str(path),
                          input_names=["x"], dynamic_shapes=({0: torch.export.Dim("n")},),
                          dynamo=True, verbose=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def settle(stack: Stack, timeout: float = 60) -> None:
    """Wait until the stack's processes are idle: after a job, the worker starts its next
    warm training process (importing torch takes seconds of CPU), which would land in the
    first model's numbers."""
    procs = [psutil.Process(p.pid) for p in stack.processes]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tree = [c for p in procs for c in [p, *p.children(recursive=True)]]
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.cpu_percent(None)
        time.sleep(1)
        busy = 0.0
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                busy += proc.cpu_percent(None)
        if busy < 10:
            return


def timed(call, n: int) -> list[float]:
    for _ in range(min(WARMUP, n)):
        call()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(http: httpx.Client, job_id: str, session: ort.InferenceSession, x: np.ndarray,
            n: int) -> list[list[object]]:
    one = x[:1]
    body = {"inputs": one.reshape(1, -1).tolist()}
    batch = x[:BATCH]
    batch_body = {"inputs": batch.reshape(BATCH, -1).tolist()}
    url = f"/v1/jobs/{job_id}/predict"

    parts: dict[str, list[float]] = {"db": [], "server": [], "model": []}

    def post(json_body: dict) -> None:
        response = http.post(url, json=json_body)
        if response.status_code != 200:
            raise RuntimeError(response.text)
        if len(json_body["inputs"]) == 1:
            for part in response.headers["server-timing"].split(", "):
                name, duration = part.split(";dur=")
                parts[name].append(float(duration))

    name = session.get_inputs()[0].name
    direct = timed(lambda: session.run(None, {name: one}), n * 5)
    over_http = timed(lambda: post(body), n)
    floor = timed(lambda: http.get(f"/v1/jobs/{job_id}").raise_for_status(), n)
    batches = max(10, n // 20)
    direct_batch = timed(lambda: session.run(None, {name: batch}), batches)
    http_batch = timed(lambda: post(batch_body), batches)
    # Same answers both ways (the server runs the bundle in torch, onnxruntime its export).
    got = http.post(url, json={"inputs": x[:64].reshape(64, -1).tolist()}).json()
    ours = np.array([p["index"] for p in got["predictions"]])
    theirs = session.run(None, {name: x[:64]})[0].argmax(1)
    agree = float((ours == theirs).mean())
    rate = lambda ms: BATCH / (median(ms) / 1000)  # noqa: E731
    skip = min(WARMUP, n)
    breakdown = ", ".join(f"{name} {median(ms[skip:]):.2f}" for name, ms in parts.items())
    return [
        ["onnxruntime, direct", median(direct), p99(direct), rate(direct_batch), 1.0],
        ["POST /predict (HTTP)", median(over_http), p99(over_http), rate(http_batch),
         median(over_http) / median(direct)],
        ["GET /v1/jobs/{id} (floor)", median(floor), p99(floor), float("nan"),
         median(floor) / median(direct)],
        ["argmax agreement", agree, float("nan"), float("nan"), float("nan")],
    ], breakdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 100 if args.quick else 1000
    x = datasets.load("digits").x_test.astype(np.float32).reshape(-1, 1, 8, 8)
    x = np.concatenate([x] * (BATCH // len(x) + 1))[:max(BATCH, 64)]
    with Stack() as stack, tempfile.TemporaryDirectory() as folder:
        stack.start_api()
        stack.start_worker()
        with httpx.Client(base_url=stack.api_url, timeout=60) as http:
            jobs = {}
            for name, example, epochs in (("digits MLP", "digits-mlp", 5),
                                          ("digits CNN", "digits-cnn", 3)):
                response = http.post("/v1/jobs", json=spec(example, epochs))
                response.raise_for_status()
                jobs[name] = response.json()["id"]
            for job_id in jobs.values():
                wait_succeeded(http, job_id)
            settle(stack)
            print(header("Prediction latency: `python bench/predict_latency.py`"))
            for name, job_id in jobs.items():
                session = onnx_session(http, job_id, Path(folder))
                rows, breakdown = measure(http, job_id, session, x, n)
                print(f"\n### {name} ({n} single-row requests, batches of {BATCH})\n")
                print(table(["path", "p50 ms (1 row)", "p99 ms (1 row)", "rows/s (batch 256)",
                             "p50 / direct"], rows))
                print(f"\nsingle row, median ms inside the API (Server-Timing): {breakdown}"
                      " (db: the rows read; server: the prediction server's round trip; "
                      "model: parsing and the model inside it)")


if __name__ == "__main__":
    main()
