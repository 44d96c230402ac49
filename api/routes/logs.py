"""/v1/jobs/{id}/logs: an attempt's log as plain text, whole or its tail, or followed as it
grows until the attempt ends.

The worker writes each attempt's log under DATA_DIR/logs (core/attempt_logs.py); the API reads
it from the same DATA_DIR (`traindock up` shares it, compose mounts one volume in both).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, BinaryIO

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.auth import request_principal
from api.deps import valid_job
from api.schemas import ValidationErrorOut
from core.attempt_logs import attempt_log_path, attempts_with_log, tail_offset
from core.repo import jobs as job_repo
from core.tables import Job

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["logs"])

DEFAULT_MAX_BYTES = 1024 * 1024
LARGEST_MAX_BYTES = 64 * 1024 * 1024
CHUNK = 256 * 1024
POLL_S = 0.5


class MessageOut(BaseModel):
    detail: str


HEADERS = {
    "X-Log-Attempt": {"description": "the attempt whose log this is",
                      "schema": {"type": "integer"}},
    "X-Log-Attempts": {"description": "the attempts that have a log, comma-separated",
                       "schema": {"type": "string"}},
    "X-Log-Size": {"description": "the log's size in bytes when the answer began",
                   "schema": {"type": "integer"}},
    "X-Log-Start": {"description": "the byte of the log the body begins at: above 0 when "
                    "earlier lines were left out (`tail`, `max_bytes`)",
                    "schema": {"type": "integer"}},
}


def _listed(attempts: list[int]) -> str:
    return ", ".join(map(str, attempts)) if attempts else "none"


def choose_attempt(job: Job, log_dir: Path, attempt: int | None) -> tuple[int, list[int]]:
    """The attempt to send (the asked one, else the latest with a log) and the attempts that
    have a log. The running attempt counts as having one: its file may not exist yet."""
    attempts = attempts_with_log(log_dir, job.id, job.attempt)
    if job.state == "running" and job.attempt not in attempts:
        attempts.append(job.attempt)
    if job.attempt == 0:
        raise HTTPException(404, f"job {job.id} has no log yet: it is {job.state} and no "
                                 "attempt has started")
    if attempt is not None and attempt > job.attempt:
        raise HTTPException(404, f"job {job.id} has no attempt {attempt}; its attempts are "
                                 f"1 to {job.attempt}, and those with a log: "
                                 f"{_listed(attempts)}")
    if attempt is None and attempts:
        attempt = attempts[-1]
    if attempt is None or attempt not in attempts:
        what = (f"attempt {attempt} left no log" if attempt is not None
                else "no attempt left a log")
        raise HTTPException(404, f"job {job.id}: {what} in this server's data directory "
                                 f"(attempts with a log: {_listed(attempts)}); the API must "
                                 "share TRAINDOCK_DATA_DIR with the workers")
    return attempt, attempts


def _start_and_size(path: Path, tail: int | None, max_bytes: int) -> tuple[int, int]:
    try:
        with open(path, "rb") as file:
            size = file.seek(0, 2)
            return tail_offset(file, size, tail, max_bytes), size
    except FileNotFoundError:  # the running attempt's, not written yet
        return 0, 0


def _attempt_over(factory: sessionmaker[Session], job_id: uuid.UUID, attempt: int) -> bool:
    with factory() as session:
        job = job_repo.get_job(session, job_id)
        return job is None or job.state != "running" or job.attempt != attempt


class LogReader:
    """The log's bytes from `start`, as valid UTF-8 text (a character cut by a read is
    completed by the next; undecodable bytes become U+FFFD)."""

    def __init__(self, path: Path, start: int) -> None:
        self.path = path
        self.pos = start
        self.file: BinaryIO | None = None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def read(self, upto: int | None = None) -> bytes:
        """The next chunk (at most CHUNK bytes, none past `upto`); b"" at the end."""
        if self.file is None:
            try:
                self.file = open(self.path, "rb")  # noqa: SIM115 - closed in close()
            except FileNotFoundError:
                return b""
            self.file.seek(self.pos)
        want = CHUNK if upto is None else min(CHUNK, upto - self.pos)
        data = self.file.read(want) if want > 0 else b""
        self.pos += len(data)
        return self.decoder.decode(data).encode()

    def finish(self) -> bytes:
        return self.decoder.decode(b"", final=True).encode()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


async def _send_log(request: Request, reader: LogReader, size: int, follow: bool,
                    job_id: uuid.UUID, attempt: int) -> AsyncIterator[bytes]:
    factory = request.app.state.sessionmaker
    try:
        while chunk := await run_in_threadpool(reader.read, size):
            yield chunk
        while follow:
            # The state first, then the file: once the attempt is seen over, its child has
            # exited, and what it wrote is all on disk before the last read below.
            try:
                over = await run_in_threadpool(_attempt_over, factory, job_id, attempt)
            except (OperationalError, InterfaceError) as exc:
                log.warning("logs of job %s: %s", job_id, str(exc).splitlines()[0])
                over = False
            while chunk := await run_in_threadpool(reader.read):
                yield chunk
            if over or await request.is_disconnected():
                break
            await asyncio.sleep(POLL_S)
        if tail := reader.finish():
            yield tail
    finally:
        reader.close()


@router.get(
    "/{job_id}/logs",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/plain": {"example": "2026-01-01 12:00:00,000 INFO ready to "
                                         "train after 4.10 s: ...\n"}},
              "description": "the attempt's log, or its tail; with `follow`, streamed until "
                             "the attempt ends", "headers": HEADERS},
        404: {"model": MessageOut, "description": "no such job; or the job has no such "
              "attempt, or no log yet (the message lists the attempts that have one)"},
        422: {"model": ValidationErrorOut, "description": "the query parameter to change"},
    },
)
async def read_log(
    job_id: uuid.UUID,
    request: Request,
    attempt: Annotated[int | None, Query(ge=1, description="the attempt (1, 2, ...); "
                                         "default: the latest that has a log")] = None,
    tail: Annotated[int | None, Query(ge=1, le=1_000_000,
                                      description="only the last N lines")] = None,
    max_bytes: Annotated[int, Query(ge=1, le=LARGEST_MAX_BYTES, description="at most the "
                                    "last N bytes of the log, cut at a line start")
                         ] = DEFAULT_MAX_BYTES,
    follow: Annotated[bool, Query(description="keep sending what the attempt writes until "
                                  "it ends (or the client leaves)")] = False,
) -> StreamingResponse:
    """The log of one attempt of the job: its training process's output, with the start-up
    breakdown (`ready to train after ...`) and, for a failed job, the error's traceback.
    Plain UTF-8 text; at most the last `max_bytes` bytes (1 MiB unless given), and with
    `tail` only the last lines. With `follow=true` the answer goes on as the attempt writes,
    and ends once the attempt is over (the job left `running`, or a newer attempt began)."""
    factory = request.app.state.sessionmaker
    log_dir = request.app.state.settings.log_dir

    def prepare() -> tuple[int, list[int], int, int]:
        with factory() as session:
            job = valid_job(job_id, session, request_principal(request))
        chosen, attempts = choose_attempt(job, log_dir, attempt)
        start, size = _start_and_size(attempt_log_path(log_dir, job_id, chosen), tail,
                                      max_bytes)
        return chosen, attempts, start, size

    chosen, attempts, start, size = await run_in_threadpool(prepare)
    reader = LogReader(attempt_log_path(log_dir, job_id, chosen), start)
    headers = {"X-Log-Attempt": str(chosen), "X-Log-Attempts": ",".join(map(str, attempts)),
               "X-Log-Size": str(size), "X-Log-Start": str(start), "Cache-Control": "no-cache"}
    if follow:
        headers["X-Accel-Buffering"] = "no"  # no buffering by a proxy (nginx) in front
    return StreamingResponse(_send_log(request, reader, size, follow, job_id, chosen),
                             media_type="text/plain; charset=utf-8", headers=headers)
