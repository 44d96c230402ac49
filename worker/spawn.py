"""Starting training children: cold (a fresh interpreter per attempt, started when the job
is claimed) or warm (started ahead, after the previous job's child exited, with torch and
traindock already imported, waiting on its stdin for a job).

A warm child cuts what an attempt pays before its first step: the imports and torch's first
optimizer (docs/benchmarks.md, "Submit to first training step", has the figures). It has
touched no device until it is handed a job, and it exits after that one job like a cold
child, so GPU memory is still returned between jobs; what it costs is its resident memory
while the worker is idle (on by default, in `traindock up` and compose alike;
TRAINDOCK_WARM_CHILD=false turns it off).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from core.processes import die_with_parent
from core.settings import Settings
from worker.began import SPAWNED_AT_ENV

log = logging.getLogger(__name__)


def _popen(args: list[str], log_file, stdin) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "worker.child", *args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=stdin,
        # The kernel kills the child if the worker dies (see WarmChild for the thread).
        preexec_fn=die_with_parent(os.getpid()),
        env={**os.environ, "PYTHONUNBUFFERED": "1", SPAWNED_AT_ENV: repr(time.time())},
    )


def start_child(job_id: uuid.UUID, attempt: int, log_path: Path) -> subprocess.Popen:
    """A cold child: a new interpreter for this attempt, its output in log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return _popen([str(job_id), str(attempt)], log_file, subprocess.DEVNULL)


class WarmChild:
    """At most one child waiting for a job. Used from the worker's main thread only (the
    solo pool runs tasks there), which is also the thread PR_SET_PDEATHSIG watches."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def prepare(self, settings: Settings) -> None:
        """Start one if the settings want it and none is waiting."""
        if not settings.warm_child or (self.proc is not None and self.proc.poll() is None):
            return
        log_path = settings.log_dir / "warm" / f"worker-{os.getpid()}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            self.proc = _popen(["--wait"], log_file, subprocess.PIPE)

    def take(self, job_id: uuid.UUID, attempt: int, log_path: Path) -> subprocess.Popen | None:
        """Hand the waiting child this attempt; None when there is none alive to take."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return None
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            proc.stdin.write(f"{job_id} {attempt} {time.time()!r} {log_path}\n".encode())
            proc.stdin.close()
        except OSError as exc:  # it died between the poll and the write
            log.warning("the warm training child could not take job %s: %s", job_id, exc)
            proc.kill()
            proc.wait()
            return None
        return proc

    def discard(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


WARM = WarmChild()


def start_attempt(job_id: uuid.UUID, attempt: int, log_path: Path) -> subprocess.Popen:
    """The warm child when there is one, else a cold one."""
    return WARM.take(job_id, attempt, log_path) or start_child(job_id, attempt, log_path)
