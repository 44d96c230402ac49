"""The prediction server: a long-lived child of one API process (inference/client.py starts
it) that loads checkpoints as bundles, keeps them in a memory-bounded LRU cache, and answers
one request at a time over its stdin and stdout (inference/protocol.py).

A request carries the checkpoint the API located (inference/job_bundle.py: its file, sha256,
step and the dataset's description); this process never touches the database. It parses and
checks the inputs itself (inference/inputs.py), so that whatever a client sends costs this
process's CPU and memory, not the API's. Run as `python -m inference.server CONFIG_JSON`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch

from inference.answers import predictions
from inference.bundle import Bundle
from inference.inputs import InputError, input_spec, parse_body
from inference.job_bundle import Located, load_located
from inference.model_cache import ModelCache
from inference.protocol import read_message, write_message


def module_bytes(module: torch.nn.Module) -> int:
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class Server:
    def __init__(self, config: dict[str, Any]) -> None:
        self.max_rows = int(config["max_rows"])
        self.cache: ModelCache[Bundle] = ModelCache(int(config["cache_bytes"]))

    def bundle(self, request: dict[str, Any]) -> tuple[Bundle, bool]:
        located = Located.from_dict(request["located"])

        def load() -> tuple[Bundle, int]:
            bundle = load_located(located)
            return bundle, module_bytes(bundle.module)

        return self.cache.get(located.sha256, load)

    def answer(self, request: dict[str, Any], payload: bytes) -> dict[str, Any]:
        started = time.perf_counter()
        bundle, cached = self.bundle(request)
        names = bundle.feature_names
        spec = input_spec(bundle.input_shape, tuple(names) if names else None,
                          bundle.spec["dataset"].get("name") or "", self.max_rows)
        try:
            x = parse_body(request["kind"], payload, spec, request.get("files"))
        except InputError as exc:
            return {"error": exc.as_dict()}
        out = bundle(torch.from_numpy(x)).numpy()
        return {"ok": {"predictions": predictions(out, bundle.task, bundle.class_names),
                       "task": bundle.task, "cached": cached,
                       "seconds": round(time.perf_counter() - started, 6)}}


def serve(config: dict[str, Any]) -> None:
    torch.set_num_threads(int(config.get("threads", 1)))
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    server = Server(config)
    while True:
        try:
            request, payload = read_message(requests)
        except EOFError:  # the API process closed the pipe or died
            return
        try:
            reply = server.answer(request, payload)
        except FileNotFoundError as exc:
            reply = {"error": {"field": "checkpoint", "status": 410, "message": "the checkpoint's "
                               f"file is no longer on disk ({exc.filename}); ask for another "
                               "with ?checkpoint="}}
        except Exception as exc:  # one bad checkpoint or request must not end the server
            print(f"prediction server: {type(exc).__name__}: {exc}", file=sys.stderr,
                  flush=True)
            reply = {"error": {"field": "checkpoint", "status": 500,
                               "message": f"could not run the model ({type(exc).__name__}: "
                               f"{exc})"}}
        write_message(replies, reply)


if __name__ == "__main__":
    np.seterr(all="ignore")
    serve(json.loads(sys.argv[1]))
