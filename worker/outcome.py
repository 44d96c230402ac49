"""How an attempt's training process ended, and what that makes of the job: a pure decision.

The supervisor watches the child and names what happened (an `Outcome`); `decide` turns that
and the job's row (`JobFacts`) into the job's next state (a `Decision`), which the supervisor
writes. No database, no processes: the whole exit-code table is tested as a table
(tests/test_outcome.py).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass

from worker.exit_codes import (
    EXIT_CRASH,
    EXIT_DATABASE_GONE,
    EXIT_DISK_FULL,
    EXIT_LEASE_LOST,
    EXIT_OK,
    EXIT_PREEMPTED,
    EXIT_PRUNED,
    EXIT_TRAINING_ERROR,
)

# --- what happened to the child -------------------------------------------------------------


@dataclass(frozen=True)
class Exited:
    """The child exited on its own (or was killed by someone other than the supervisor)."""

    code: int


@dataclass(frozen=True)
class Preempted:
    """The child was asked to checkpoint and stop (a worker shutdown), or a Ctrl-C reached it
    while it was starting; `code` is how it exited (it may have finished meanwhile)."""

    code: int


@dataclass(frozen=True)
class Killed:
    """The supervisor killed the child (over its memory limit, stalled); `reason` says why.
    `code` is how it ended: SIGKILL, unless it exited just before."""

    reason: str
    code: int = -signal.SIGKILL


@dataclass(frozen=True)
class Cancelled:
    """The job was cancelled; the supervisor stopped the child."""


@dataclass(frozen=True)
class LeaseLost:
    """Another attempt owns the job; the supervisor stopped the child."""


Outcome = Exited | Preempted | Killed | Cancelled | LeaseLost


# --- the job's row, as far as the decision needs it -----------------------------------------


@dataclass(frozen=True)
class JobFacts:
    attempt: int
    state: str
    cancel_requested: bool
    preemptions: int
    max_attempts: int
    error: str | None

    @classmethod
    def of(cls, job) -> JobFacts:
        return cls(attempt=job.attempt, state=job.state, cancel_requested=job.cancel_requested,
                   preemptions=job.preemptions, max_attempts=job.max_attempts, error=job.error)

    def attempts_left(self) -> bool:
        """Graceful stops (preemptions) do not count against max_attempts
        (core/repo/jobs.py attempts_left, on these facts)."""
        return self.attempt - self.preemptions < self.max_attempts


# --- the job's next state --------------------------------------------------------------------


@dataclass(frozen=True)
class Succeed:
    label = "succeeded"


@dataclass(frozen=True)
class Fail:
    reason: str
    label = "failed"


@dataclass(frozen=True)
class Cancel:
    label = "cancelled"


@dataclass(frozen=True)
class Prune:
    """A sweep's pruner stopped the trial; `reason` is the child's account of why."""

    reason: str
    label = "pruned"


@dataclass(frozen=True)
class Requeue:
    """Back to the queue. `preempted` spends no attempt; `publish_now` false leaves the message
    to the reaper, after TRAINDOCK_REPUBLISH_AFTER_S (time for a full disk to be freed)."""

    note: str
    preempted: bool
    publish_now: bool = True

    @property
    def label(self) -> str:
        return "requeued" if self.publish_now else "requeued later"


@dataclass(frozen=True)
class Nothing:
    """Nothing to write: another attempt owns the job."""

    label = "lease_lost"


Decision = Succeed | Fail | Cancel | Prune | Requeue | Nothing


def describe_exit(code: int) -> str:
    if code == EXIT_DATABASE_GONE:
        return "the training process gave up on an unreachable database"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else ""
        hint = " (likely out of memory)" if -code == signal.SIGKILL else ""
        return f"the training process was killed by signal {-code} {name}{hint}".strip()
    return f"the training process exited with code {code}"


def decide(outcome: Outcome, attempt: int, job: JobFacts | None, republish_after_s: float,
           log_tail: Callable[[], str] = lambda: "") -> Decision:
    """The job's next state after attempt `attempt` ended with `outcome`.

    `job` is the job's row read after the end (None if it is gone); `log_tail` gives the last
    lines of the attempt's log, read only for a death the child could not explain itself.
    """
    if isinstance(outcome, Cancelled):
        return Cancel()
    if isinstance(outcome, LeaseLost):
        return Nothing()
    code = outcome.code
    if code == EXIT_OK:
        return Succeed()
    if code == EXIT_LEASE_LOST:
        return Nothing()
    if job is None or job.attempt != attempt or job.state != "running":
        return Nothing()
    if job.cancel_requested:
        return Cancel()
    if isinstance(outcome, Preempted) or code == EXIT_PREEMPTED:
        return Requeue(note=f"attempt {attempt}: stopped by a worker shutdown", preempted=True)
    if code == EXIT_DISK_FULL:
        return _disk_full(attempt, job, republish_after_s)
    if code == EXIT_PRUNED:
        # Final: another attempt would be asked the same question and get the same answer.
        return Prune(job.error or "pruned by the sweep's pruner")
    if code in (EXIT_TRAINING_ERROR, EXIT_CRASH):
        # A deterministic failure of the spec or the data: another attempt would fail too.
        # The child recorded why (the claim cleared any earlier note).
        return Fail(job.error or describe_exit(code))
    # Killed (by the supervisor, out of memory, a segfault, the OOM killer) or gave up on the
    # database: retried while attempts remain.
    if isinstance(outcome, Killed):
        cause = outcome.reason
    else:
        tail = log_tail()
        cause = describe_exit(code) + (f"; last output:\n{tail}" if tail else "")
    if job.attempts_left():
        return Requeue(note=f"attempt {attempt}: {cause}", preempted=False)
    return Fail(f"{cause} (attempt {attempt} of {job.max_attempts}; no attempts left)")


def _disk_full(attempt: int, job: JobFacts, republish_after_s: float) -> Decision:
    """A full disk is the machine's condition, not the job's: the job goes back to the queue
    (spending an attempt, so that it cannot loop forever) and resumes from its last
    checkpoint. Its message is not published now but by the reaper, once the job has waited
    TRAINDOCK_REPUBLISH_AFTER_S: time to free space, or for another worker to take it."""
    reason = job.error or "no space left on device writing a checkpoint"
    if not job.attempts_left():
        return Fail(f"{reason} (attempt {attempt} of {job.max_attempts}; no attempts left)")
    return Requeue(
        note=f"attempt {attempt}: {reason}; retried in about {republish_after_s:.0f} s "
             "from its last checkpoint",
        preempted=False, publish_now=False,
    )
