"""Starting training children: cold (a fresh interpreter per attempt, started when the job
is claimed) or warm (started ahead, after the previous job's child exited, with torch and
traindock already imported, waiting on its stdin for a job).

A warm child cuts what an attempt pays before its first step: the imports and torch's first
optimizer (docs/benchmarks.md, "Submit to first training step", has the figures). It has
touched no device until it is handed a job, and it exits after that one job like a cold
child, so GPU memory is still returned between jobs; what it costs is its resident memory
while the worker is idle (on by default, in `traindock up` and compose alike;
TRAINDOCK_WARM_CHILD=false turns it off).

With TRAINDOCK_WARM_CHILD_JOBS above 1, a warm child that ended its job normally on the CPU
says so on a pipe ("done CODE") instead of exiting, and waits for the next job: it is handed
back to WARM at once, so the next job (a sweep's next trial) pays no interpreter at all. The
supervisor sees the same face either way (ReusedChild has Popen's wait, poll, returncode,
signals): the attempt's end is the line on the pipe, or the process's exit.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from core.processes import die_with_parent
from core.settings import Settings
from worker.began import SPAWNED_AT_ENV

log = logging.getLogger(__name__)


def _popen(args: list[str], log_file, stdin, pass_fds: tuple[int, ...] = ()
           ) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "worker.child", *args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=stdin,
        pass_fds=pass_fds,
        # The kernel kills the child if the worker dies (see WarmChild for the thread).
        preexec_fn=die_with_parent(os.getpid()),
        env={**os.environ, "PYTHONUNBUFFERED": "1", SPAWNED_AT_ENV: repr(time.time())},
    )


def start_child(job_id: uuid.UUID, attempt: int, log_path: Path) -> subprocess.Popen:
    """A cold child: a new interpreter for this attempt, its output in log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return _popen([str(job_id), str(attempt)], log_file, subprocess.DEVNULL)


class ReusedChild:
    """One attempt in a warm child that may train further jobs, with the face of a Popen:
    `wait`, `poll` and `returncode` report the attempt's exit code, which the child writes
    on its results pipe when it will take another job, or the process's own when it exits
    (the pipe's end is then seen as closed). Signals go to the process while the attempt
    runs, and nowhere after it ended."""

    def __init__(self, proc: subprocess.Popen, results: int) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.args = proc.args
        self.results = results  # read end of the pipe; the child holds the write end
        self.returncode: int | None = None
        self.reusable = False  # the child said "done": it waits for the next job

    def poll(self) -> int | None:
        return self._ended(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._ended(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def _ended(self, timeout: float | None) -> int | None:
        if self.returncode is not None:
            return self.returncode
        readable, _, _ = select.select([self.results], [], [], timeout)
        if not readable:
            return None
        line = os.read(self.results, 64).decode(errors="replace")
        if line.startswith("done ") and line.endswith("\n") and self.proc.poll() is None:
            self.returncode, self.reusable = int(line.split()[1]), True
        else:  # closed: the process exited (or wrote something else, and is of no use)
            if line and self.proc.poll() is None:
                self.proc.kill()
            self.returncode = self.proc.wait()
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.returncode is None:
            self.proc.kill()
            self.returncode = self.proc.wait()

    def close(self) -> None:
        """Kill the process (if it still runs) and close the pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.results)
        if self.proc.stdin:
            self.proc.stdin.close()


Attempt = subprocess.Popen | ReusedChild


class WarmChild:
    """At most one child waiting for a job. Used from the worker's main thread only (the
    solo pool runs tasks there), which is also the thread PR_SET_PDEATHSIG watches."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.results: int | None = None  # its results pipe, when it may train more than one
        self.trained = 0  # jobs it has trained

    def prepare(self, settings: Settings) -> None:
        """Start one if the settings want it and none is waiting."""
        if not settings.warm_child or (self.proc is not None and self.proc.poll() is None):
            return
        log_path = settings.log_dir / "warm" / f"worker-{os.getpid()}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            if settings.warm_child_jobs > 1:
                read_end, write_end = os.pipe()
                try:
                    self.proc = _popen(["--wait", "--results-fd", str(write_end)], log_file,
                                       subprocess.PIPE, pass_fds=(write_end,))
                finally:
                    os.close(write_end)
                self.results = read_end
            else:
                self.proc, self.results = _popen(["--wait"], log_file, subprocess.PIPE), None
        self.trained = 0

    def take(self, job_id: uuid.UUID, attempt: int, log_path: Path) -> Attempt | None:
        """Hand the waiting child this attempt; None when there is none alive to take."""
        proc, results, self.proc, self.results = self.proc, self.results, None, None
        if proc is None or proc.poll() is not None:
            if results is not None:
                os.close(results)
            return None
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            proc.stdin.write(f"{job_id} {attempt} {time.time()!r} {log_path}\n".encode())
            proc.stdin.flush()
            if results is None:
                proc.stdin.close()
        except OSError as exc:  # it died between the poll and the write
            log.warning("the warm training child could not take job %s: %s", job_id, exc)
            proc.kill()
            proc.wait()
            if results is not None:
                os.close(results)
            return None
        return proc if results is None else ReusedChild(proc, results)

    def after(self, attempt: Attempt, settings: Settings, stopping: bool) -> None:
        """Once an attempt has ended: keep its child for the next job when it said it can
        take one (and the worker is not stopping), else start a fresh one."""
        if isinstance(attempt, ReusedChild):
            self.trained += 1
            if (attempt.reusable and not stopping and self.proc is None
                    and self.trained < settings.warm_child_jobs):
                self.proc, self.results = attempt.proc, attempt.results
                return
            attempt.close()
        if not stopping:
            self.prepare(settings)

    def discard(self) -> None:
        proc, results, self.proc, self.results = self.proc, self.results, None, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if results is not None:
            os.close(results)


WARM = WarmChild()


def start_attempt(job_id: uuid.UUID, attempt: int, log_path: Path) -> Attempt:
    """The warm child when there is one, else a cold one."""
    return WARM.take(job_id, attempt, log_path) or start_child(job_id, attempt, log_path)
