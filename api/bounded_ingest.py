"""Run core/uploads/ingest_child.py for one received file and wait for its answer, killing it
at the wall-clock deadline or as soon as the client hangs up. The API process itself never
parses an upload: its memory stays flat whatever the file inflates to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from core.settings import Settings
from core.uploads.ingest_child import MiB, memory_message
from core.uploads.parsed import UploadError

DISCONNECT_POLL_S = 0.5
# What the child's numeric libraries need no more than one thread for; fewer threads also
# means less address space reserved for their stacks and buffers.
SINGLE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                        "MKL_NUM_THREADS")}


class ClientGone(Exception):
    """The client hung up while its upload was parsed; the child was killed."""


def child_request(settings: Settings, path: Path, filename: str, options: dict[str, Any],
                  work_dir: Path, tmp_dir: Path) -> dict[str, Any]:
    return {
        "path": str(path), "filename": filename, "options": options,
        "max_unpacked_bytes": settings.max_unpacked_bytes,
        "max_parsed_bytes": settings.max_parsed_bytes,
        "work_dir": str(work_dir), "tmp_dir": str(tmp_dir),
        "memory_bytes": settings.ingest_memory_mb * MiB, "cpu_s": settings.ingest_cpu_s,
    }


_turns: dict[int, asyncio.Semaphore] = {}  # per event loop: TRAINDOCK_INGEST_CONCURRENCY


async def parse_in_child(settings: Settings, request: dict[str, Any],
                         disconnected: Callable[[], Awaitable[bool]] | None = None
                         ) -> dict[str, Any]:
    """The child's "ok" answer; UploadError for its refusals and for the limits it hit;
    ClientGone when `disconnected()` turned true first. At most
    TRAINDOCK_INGEST_CONCURRENCY children run at once, so that N uploads at a time cannot
    cost N times the memory limit."""
    loop = id(asyncio.get_running_loop())
    turn = _turns.setdefault(loop, asyncio.Semaphore(settings.ingest_concurrency))
    async with turn:
        return await _run_child(settings, request, disconnected)


async def _run_child(settings: Settings, request: dict[str, Any],
                     disconnected: Callable[[], Awaitable[bool]] | None) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core.uploads.ingest_child",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=os.environ | SINGLE_THREAD,
        cwd=Path(__file__).resolve().parent.parent,
    )
    talk = asyncio.ensure_future(proc.communicate(json.dumps(request).encode()))
    watch = asyncio.ensure_future(_wait_for_disconnect(disconnected))
    try:
        done, _ = await asyncio.wait({talk, watch}, timeout=settings.ingest_deadline_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        if talk not in done:
            _kill(proc)
            if watch in done:
                raise ClientGone()
            raise UploadError("file", f"parsing took longer than {settings.ingest_deadline_s:g} "
                              "s, the limit (setting TRAINDOCK_INGEST_DEADLINE_S); upload less "
                              "data at once", status=422)
        out, err = talk.result()
    finally:
        watch.cancel()
        if not talk.done():
            _kill(proc)
            talk.cancel()
            with contextlib.suppress(BaseException):
                await proc.wait()
    return _answer(proc.returncode, out, err, settings)


async def _wait_for_disconnect(disconnected: Callable[[], Awaitable[bool]] | None) -> None:
    if disconnected is None:
        await asyncio.Event().wait()  # never
        return
    while not await disconnected():
        await asyncio.sleep(DISCONNECT_POLL_S)


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def _answer(code: int | None, out: bytes, err: bytes, settings: Settings) -> dict[str, Any]:
    if code == -signal.SIGXCPU:
        raise UploadError("file", f"parsing used more than {settings.ingest_cpu_s} CPU "
                          "seconds, the limit (setting TRAINDOCK_INGEST_CPU_S); upload less "
                          "data at once", status=422)
    if code == -signal.SIGKILL and not out:  # RLIMIT_CPU's hard limit, or the OOM killer
        raise UploadError("file", "the parsing process was killed: it passed the CPU or "
                          f"memory limit ({settings.ingest_cpu_s} s, TRAINDOCK_INGEST_CPU_S; "
                          f"{settings.ingest_memory_mb} MB, TRAINDOCK_INGEST_MEMORY_MB); upload "
                          "less data at once", status=413)
    try:
        answer = json.loads(out)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        if b"MemoryError" in err or b"Cannot allocate memory" in err:
            raise UploadError("file", memory_message(settings.ingest_memory_mb * MiB),
                              status=413)
        print(f"ingest child exited with {code}: {err.decode(errors='replace')[-4000:]}",
              file=sys.stderr, flush=True)
        raise UploadError("file", "could not be parsed: the parsing process ended without an "
                          "answer; check the file, or upload it in another format", status=422)
    if "error" in answer:
        error = answer["error"]
        raise UploadError(error["field"], error["message"], status=int(error["status"]))
    return answer["ok"]
