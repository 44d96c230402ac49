"""Exports run in child processes (inference/export_child.py), never in the API's process
or on its event loop: tracing a network takes seconds of CPU and the exporters take seconds
to import. A child is kept while exports come, so that only the first pays for the imports,
and closed after TRAINDOCK_EXPORT_IDLE_S without one; a child past the deadline is killed
and the next export starts a new one. At most TRAINDOCK_EXPORT_CONCURRENCY children."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from api.bounded_ingest import SINGLE_THREAD
from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


class ExportFailed(Exception):
    """An export the API answers with `status`, naming `field` (None: no request field)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


class ExportChild:
    """One `python -m inference.export_child`, asked one request at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: asyncio.subprocess.Process | None = None
        self.idle: asyncio.TimerHandle | None = None
        self.busy = False  # between a request written and its answer read

    async def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.idle is not None:
            self.idle.cancel()
        self.busy = True  # before any await: an idle close that already fired leaves it be
        try:
            return await self._ask(request)
        finally:
            self.busy = False

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.proc is None or self.proc.returncode is not None:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "inference.export_child",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                env=os.environ | SINGLE_THREAD, cwd=ROOT,  # its stderr is the API's log
            )
        proc = self.proc
        try:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(),
                                          timeout=self.settings.export_deadline_s)
        except TimeoutError:
            await self.stop()
            raise ExportFailed(503, f"the export took longer than "
                               f"{self.settings.export_deadline_s:g} s, the limit (setting "
                               "TRAINDOCK_EXPORT_DEADLINE_S); try again when the server is "
                               "less busy") from None
        except BaseException:  # the request was cancelled, or the child's pipe broke
            await self.stop()
            raise
        if not line:
            await self.stop()
            raise ExportFailed(500, "the export process ended without an answer; the "
                               "server's log has its error")
        self.idle = asyncio.get_running_loop().call_later(
            self.settings.export_idle_s, lambda: asyncio.ensure_future(self.close()))
        answer = json.loads(line)
        if "error" in answer:
            error = answer["error"]
            raise ExportFailed(int(error["status"]), error["message"], error.get("field"))
        return answer["ok"]

    async def close(self) -> None:
        """End of input: the child exits when it has answered. Not while it is exporting: the
        idle timer can fire just as a new request comes, and closing then would kill an
        export that takes longer than the wait below."""
        if self.busy:
            return
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.stdin.close()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(proc.wait(), timeout=10)
            await _kill(proc)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            await _kill(proc)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(BaseException):
            await proc.wait()


_children: dict[int, asyncio.Queue] = {}  # per event loop: the idle children


async def export_in_child(settings: Settings, request: dict[str, Any]) -> dict[str, Any]:
    """The child's "ok" answer; ExportFailed for what it refused and for the deadline."""
    loop = id(asyncio.get_running_loop())
    idle = _children.get(loop)
    if idle is None:
        idle = _children[loop] = asyncio.Queue()
        for _ in range(settings.export_concurrency):
            idle.put_nowait(ExportChild(settings))
    child = await idle.get()
    try:
        return await child.ask(request)
    finally:
        idle.put_nowait(child)
