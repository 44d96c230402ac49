"""Claim a job and supervise its training child: lease heartbeat, cancel, exit code -> state."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from core.db import session_scope
from core.repo import jobs as job_repo
from core.settings import Settings
from worker.child import EXIT_CRASH, EXIT_LEASE_LOST, EXIT_OK, EXIT_TRAINING_ERROR

log = logging.getLogger(__name__)

STOP_GRACE_S = 1.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills it if the worker dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start_child(job_id: uuid.UUID, attempt: int, log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "worker.child", str(job_id), str(attempt)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def stop_child(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def describe_exit(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else ""
        hint = " (likely out of memory)" if -code == signal.SIGKILL else ""
        return f"the training process was killed by signal {-code} {name}{hint}".strip()
    return f"the training process exited with code {code}"


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def supervise_job(job_id: uuid.UUID, settings: Settings, owner: str) -> str:
    """Run one job to its end. Returns what happened (for logs and tests)."""
    with session_scope() as session:
        attempt = job_repo.claim_job(session, job_id, owner, settings.lease_ttl_s)
    if attempt is None:
        log.info("job %s is not queued (duplicate message or already taken)", job_id)
        return "duplicate"

    log_path = settings.log_dir / str(job_id) / f"attempt-{attempt}.log"
    proc = start_child(job_id, attempt, log_path)
    log.info("job %s attempt %d: training child pid %d", job_id, attempt, proc.pid)
    renew_every = settings.lease_ttl_s / 3
    next_renew = time.monotonic() + renew_every
    while True:
        try:
            code = proc.wait(settings.cancel_poll_s)
            break
        except subprocess.TimeoutExpired:
            pass
        try:
            with session_scope() as session:
                if time.monotonic() >= next_renew:
                    cancel = job_repo.renew_lease(session, job_id, attempt, settings.lease_ttl_s)
                    next_renew = time.monotonic() + renew_every
                else:
                    job = job_repo.get_job(session, job_id)
                    owned = job and job.attempt == attempt and job.state == "running"
                    cancel = job.cancel_requested if owned else None
        except SQLAlchemyError as exc:
            log.warning("job %s: database unreachable while supervising: %s", job_id, exc)
            continue
        if cancel is None:
            log.warning("job %s attempt %d lost its lease; stopping the child", job_id, attempt)
            stop_child(proc)
            return "lease_lost"
        if cancel:
            stop_child(proc)
            with session_scope() as session:
                job_repo.finish_job(session, job_id, attempt, "cancelled")
            log.info("job %s cancelled", job_id)
            return "cancelled"

    return _finish(job_id, attempt, code, log_path)


def _finish(job_id: uuid.UUID, attempt: int, code: int, log_path: Path) -> str:
    with session_scope() as session:
        if code == EXIT_OK:
            job_repo.finish_job(session, job_id, attempt, "succeeded")
            return "succeeded"
        if code == EXIT_LEASE_LOST:
            return "lease_lost"
        job = job_repo.get_job(session, job_id)
        if job is not None and job.cancel_requested:
            job_repo.finish_job(session, job_id, attempt, "cancelled")
            return "cancelled"
        error = None
        if code not in (EXIT_TRAINING_ERROR, EXIT_CRASH):
            tail = _log_tail(log_path)
            error = describe_exit(code) + (f"; last output:\n{tail}" if tail else "")
        job_repo.finish_job(session, job_id, attempt, "failed", error or describe_exit(code))
        return "failed"
