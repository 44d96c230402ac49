"""The supervisor's decision, as a table: how an attempt ended x the job's row -> next state.
Pure (worker/outcome.py): no database, no processes. The real-process tests (test_faults.py,
test_stall.py, test_disk_full.py, test_worker_sigint.py, test_end_to_end.py) check that the
supervisor writes what this decides."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

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
from worker.outcome import (
    Cancel,
    Cancelled,
    Exited,
    Fail,
    JobFacts,
    Killed,
    LeaseLost,
    Nothing,
    Preempted,
    Prune,
    Requeue,
    Succeed,
    decide,
    describe_exit,
)

ROOT = Path(__file__).resolve().parent.parent
REPUBLISH_AFTER_S = 30.0
SIGKILL = -signal.SIGKILL
SIGINT = -signal.SIGINT
MEMORY = "the training process used 900 MB of memory, over the 512 MB limit"
STALL = "no progress for 60 s at step 7"
DISK = "no space left on device writing checkpoint step 40 (OSError: [Errno 28])"
SHUTDOWN = "attempt 1: stopped by a worker shutdown"
PRUNED = "pruned at step 40: val_loss 2.3 was worse than the median 0.41 of the 2 completed ..."


def running(attempt: int = 1, *, max_attempts: int = 3, preemptions: int = 0,
            error: str | None = None, cancel_requested: bool = False,
            state: str = "running") -> JobFacts:
    return JobFacts(attempt=attempt, state=state, cancel_requested=cancel_requested,
                    preemptions=preemptions, max_attempts=max_attempts, error=error)


LAST = running(3, max_attempts=3)  # attempt 3 of 3: no attempts left
LAST_BUT_PREEMPTED = running(3, max_attempts=3, preemptions=1)  # a preemption spent none


TABLE = [
    # (id, outcome, job, decision)
    ("exit 0", Exited(EXIT_OK), running(), Succeed()),
    ("exit 0, job gone", Exited(EXIT_OK), None, Succeed()),
    ("exit 0 after a stop", Preempted(EXIT_OK), running(), Succeed()),
    ("exit 4 lease lost", Exited(EXIT_LEASE_LOST), running(), Nothing()),
    ("exit 3 training error", Exited(EXIT_TRAINING_ERROR), running(error="bad column 'y'"),
     Fail("bad column 'y'")),
    ("exit 3 without a recorded error", Exited(EXIT_TRAINING_ERROR), running(),
     Fail("the training process exited with code 3")),
    ("exit 3 with attempts left is still final", Exited(EXIT_TRAINING_ERROR),
     running(1, max_attempts=5, error="nan loss"), Fail("nan loss")),
    ("exit 5 crash", Exited(EXIT_CRASH), running(error="Traceback ..."), Fail("Traceback ...")),
    ("exit 6 preempted", Exited(EXIT_PREEMPTED), running(), Requeue(SHUTDOWN, preempted=True)),
    ("exit 6 on the last attempt", Exited(EXIT_PREEMPTED), LAST,
     Requeue("attempt 3: stopped by a worker shutdown", preempted=True)),
    ("worker shutdown", Preempted(EXIT_PREEMPTED), running(), Requeue(SHUTDOWN, preempted=True)),
    ("worker shutdown, killed after the grace", Preempted(SIGKILL), running(),
     Requeue(SHUTDOWN, preempted=True)),
    ("SIGINT during start-up", Preempted(SIGINT), running(), Requeue(SHUTDOWN, preempted=True)),
    ("exit 7 database gone", Exited(EXIT_DATABASE_GONE), running(),
     Requeue("attempt 1: the training process gave up on an unreachable database; "
             "last output:\nepoch 1 step 5", preempted=False)),
    ("exit 7 database gone, none left", Exited(EXIT_DATABASE_GONE), LAST,
     Fail("the training process gave up on an unreachable database; last output:\n"
          "epoch 1 step 5 (attempt 3 of 3; no attempts left)")),
    ("exit 9 pruned", Exited(EXIT_PRUNED), running(error=PRUNED), Prune(PRUNED)),
    ("exit 9 pruned with attempts left is still final", Exited(EXIT_PRUNED),
     running(1, max_attempts=3, error=PRUNED), Prune(PRUNED)),
    ("exit 9 without a recorded reason", Exited(EXIT_PRUNED), running(),
     Prune("pruned by the sweep's pruner")),
    ("exit 8 disk full", Exited(EXIT_DISK_FULL), running(error=DISK),
     Requeue(f"attempt 1: {DISK}; retried in about 30 s from its last checkpoint",
             preempted=False, publish_now=False)),
    ("exit 8 disk full without a recorded error", Exited(EXIT_DISK_FULL), running(2),
     Requeue("attempt 2: no space left on device writing a checkpoint; retried in about 30 s "
             "from its last checkpoint", preempted=False, publish_now=False)),
    ("exit 8 disk full, none left", Exited(EXIT_DISK_FULL), running(3, error=DISK),
     Fail(f"{DISK} (attempt 3 of 3; no attempts left)")),
    ("exit 8 disk full, a preemption gave one back", Exited(EXIT_DISK_FULL),
     running(3, preemptions=1, error=DISK),
     Requeue(f"attempt 3: {DISK}; retried in about 30 s from its last checkpoint",
             preempted=False, publish_now=False)),
    ("SIGKILL from outside (OOM killer)", Exited(SIGKILL), running(),
     Requeue("attempt 1: the training process was killed by signal 9 SIGKILL "
             "(likely out of memory); last output:\nepoch 1 step 5", preempted=False)),
    ("SIGKILL from outside, none left", Exited(SIGKILL), LAST,
     Fail("the training process was killed by signal 9 SIGKILL (likely out of memory); "
          "last output:\nepoch 1 step 5 (attempt 3 of 3; no attempts left)")),
    ("SIGKILL, a preemption gave one back", Exited(SIGKILL), LAST_BUT_PREEMPTED,
     Requeue("attempt 3: the training process was killed by signal 9 SIGKILL "
             "(likely out of memory); last output:\nepoch 1 step 5", preempted=False)),
    ("segfault", Exited(-signal.SIGSEGV), running(),
     Requeue("attempt 1: the training process was killed by signal 11 SIGSEGV; "
             "last output:\nepoch 1 step 5", preempted=False)),
    ("an unknown exit code", Exited(42), running(),
     Requeue("attempt 1: the training process exited with code 42; last output:\n"
             "epoch 1 step 5", preempted=False)),
    ("over the memory limit", Killed(MEMORY), running(),
     Requeue(f"attempt 1: {MEMORY}", preempted=False)),
    ("over the memory limit, none left", Killed(MEMORY), LAST,
     Fail(f"{MEMORY} (attempt 3 of 3; no attempts left)")),
    ("stalled", Killed(STALL), running(2), Requeue(f"attempt 2: {STALL}", preempted=False)),
    ("stalled, none left", Killed(STALL), LAST,
     Fail(f"{STALL} (attempt 3 of 3; no attempts left)")),
    ("killed, but it had just succeeded", Killed(STALL, EXIT_OK), running(), Succeed()),
    ("cancelled", Cancelled(), running(), Cancel()),
    ("cancelled, job row unread", Cancelled(), None, Cancel()),
    ("lease lost", LeaseLost(), running(), Nothing()),
]

# Rows where the job is no longer this attempt's to end: every outcome but success (and
# cancel, already seen by the supervisor) writes nothing.
NOT_OURS = [
    ("job gone", None),
    ("a newer attempt", running(2)),
    ("already cancelled", running(state="cancelled")),
    ("already failed", running(state="failed")),
    ("back in the queue", running(state="queued")),
]
ENDINGS = [Exited(EXIT_TRAINING_ERROR), Exited(EXIT_CRASH), Exited(EXIT_PREEMPTED),
           Exited(EXIT_DISK_FULL), Exited(EXIT_DATABASE_GONE), Exited(EXIT_PRUNED),
           Exited(SIGKILL),
           Preempted(EXIT_PREEMPTED), Preempted(SIGINT), Killed(MEMORY), Killed(STALL)]


@pytest.mark.parametrize(("outcome", "job", "expected"),
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_each_outcome_decides_the_next_state(outcome, job, expected) -> None:
    assert decide(outcome, 1 if job is None else job.attempt, job, REPUBLISH_AFTER_S,
                  lambda: "epoch 1 step 5") == expected


@pytest.mark.parametrize("outcome", ENDINGS, ids=repr)
@pytest.mark.parametrize(("why", "job"), NOT_OURS, ids=[row[0] for row in NOT_OURS])
def test_an_attempt_that_no_longer_owns_the_job_writes_nothing(why, job, outcome) -> None:
    assert decide(outcome, 1, job, REPUBLISH_AFTER_S) == Nothing()


@pytest.mark.parametrize("outcome", ENDINGS, ids=repr)
def test_a_cancel_requested_meanwhile_wins_over_any_failure(outcome) -> None:
    assert decide(outcome, 1, running(cancel_requested=True), REPUBLISH_AFTER_S) == Cancel()


@pytest.mark.parametrize(("outcome", "reads_log"), [
    (Exited(SIGKILL), True), (Exited(42), True), (Exited(EXIT_DATABASE_GONE), True),
    (Exited(EXIT_OK), False), (Exited(EXIT_TRAINING_ERROR), False), (Exited(EXIT_CRASH), False),
    (Exited(EXIT_DISK_FULL), False), (Exited(EXIT_PRUNED), False), (Preempted(SIGINT), False),
    (Killed(MEMORY), False),
], ids=repr)
def test_the_log_is_read_only_for_a_death_the_child_could_not_explain(outcome,
                                                                      reads_log) -> None:
    read: list[bool] = []

    def tail() -> str:
        read.append(True)
        return ""

    decide(outcome, 1, running(), REPUBLISH_AFTER_S, tail)
    assert bool(read) == reads_log


def test_labels_are_what_supervise_job_returns() -> None:
    assert [d.label for d in (Succeed(), Fail("x"), Cancel(), Prune("p"), Nothing(),
                              Requeue("n", preempted=True),
                              Requeue("n", preempted=False, publish_now=False))] == [
        "succeeded", "failed", "cancelled", "pruned", "lease_lost", "requeued", "requeued later"]


def test_describe_exit_names_the_signal() -> None:
    assert describe_exit(-signal.SIGKILL) == (
        "the training process was killed by signal 9 SIGKILL (likely out of memory)")
    assert describe_exit(-signal.SIGTERM) == "the training process was killed by signal 15 SIGTERM"
    assert describe_exit(EXIT_DATABASE_GONE) == (
        "the training process gave up on an unreachable database")
    assert describe_exit(1) == "the training process exited with code 1"


def test_the_decision_imports_no_database_broker_process_or_torch_module() -> None:
    """Pure by construction: importing it loads none of what a decision must not touch."""
    probe = ("import sys, worker.outcome; "
             "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
             "{'sqlalchemy', 'psycopg', 'celery', 'psutil', 'torch', 'core', 'subprocess'})))")
    found = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                           text=True, check=True, timeout=60).stdout.split()
    assert found == []
