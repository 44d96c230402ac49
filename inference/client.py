"""The API's side of the prediction server (inference/server.py): starts it on first use,
sends it one request at a time, waits for the answer with a deadline, and starts a new one
when it died or ran past the deadline (the old one is killed). Torch-free: the API imports it.

Call `predict` from a worker thread (run_in_threadpool), never on the event loop: it blocks.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from core.processes import die_with_parent
from inference.protocol import LENGTHS, encode_message

ROOT = Path(__file__).resolve().parent.parent
SINGLE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                        "MKL_NUM_THREADS")}


class ServerError(Exception):
    """The server died or ran past the deadline; `status` is 503 or 504."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _Starter(threading.Thread):
    """Starts server processes from one thread that lives as long as the API process: the
    kernel's parent-death signal (core/processes.py) follows the thread that started a child,
    and the request threads that ask for one come and go."""

    def __init__(self) -> None:
        super().__init__(name="prediction-server-starter", daemon=True)
        self.asks: queue.Queue[tuple[list[str], Future[subprocess.Popen[bytes]]]] = queue.Queue()

    def run(self) -> None:
        while True:
            args, future = self.asks.get()
            try:
                future.set_result(subprocess.Popen(
                    args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
                    env=os.environ | SINGLE_THREAD, preexec_fn=die_with_parent(os.getpid())))
            except BaseException as exc:
                future.set_exception(exc)

    def start_process(self, args: list[str]) -> subprocess.Popen[bytes]:
        future: Future[subprocess.Popen[bytes]] = Future()
        self.asks.put((args, future))
        return future.result()


class PredictionServer:
    def __init__(self, cache_bytes: int, max_rows: int, threads: int, timeout_s: float) -> None:
        self.config = {"cache_bytes": cache_bytes, "max_rows": max_rows, "threads": threads}
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._starter: _Starter | None = None
        self.started = 0

    def _process(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            print(f"prediction server pid {self._proc.pid} ended (code {self._proc.returncode}); "
                  "starting another", file=sys.stderr, flush=True)
            self._close()
        if self._starter is None:
            self._starter = _Starter()
            self._starter.start()
        self._proc = self._starter.start_process(
            [sys.executable, "-m", "inference.server", json.dumps(self.config)])
        self.started += 1
        return self._proc

    def request(self, header: dict[str, Any], payload: bytes = b"") -> dict[str, Any]:
        """The server's reply ({"ok": ...} or {"error": {field, message, status}}); raises
        ServerError when it died or did not answer within the deadline."""
        if not self._lock.acquire(timeout=self.timeout_s):
            raise ServerError(f"the prediction server was busy for {self.timeout_s:g} s "
                              "(setting TRAINDOCK_PREDICT_TIMEOUT_S); try again", 503)
        try:
            proc = self._process()
            try:
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write(encode_message(header, payload))
                proc.stdin.flush()
                deadline = time.monotonic() + self.timeout_s
                head_len, payload_len = LENGTHS.unpack(
                    self._read(proc, LENGTHS.size, deadline))
                reply = json.loads(self._read(proc, head_len, deadline))
                self._read(proc, payload_len, deadline)
                return reply
            except TimeoutError:
                self._close()
                raise ServerError(f"the prediction took longer than {self.timeout_s:g} s "
                                  "(setting TRAINDOCK_PREDICT_TIMEOUT_S); send fewer rows "
                                  "at once", 504) from None
            except (OSError, EOFError, ValueError) as exc:
                self._close()
                raise ServerError(f"the prediction server ended unexpectedly ({exc}); "
                                  "try again", 503) from None
        finally:
            self._lock.release()

    @staticmethod
    def _read(proc: subprocess.Popen[bytes], n: int, deadline: float) -> bytes:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        chunks, left = [], n
        while left:
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError()
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                raise TimeoutError()
            chunk = os.read(fd, left)
            if not chunk:
                raise EOFError("the prediction server closed its output")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        proc.wait()

    def close(self) -> None:
        with self._lock:
            self._close()
