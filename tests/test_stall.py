"""The stall watchdog on real processes: a training process stopped with SIGSTOP is killed
and its job retried, then failed, with the stall as the reason; a long evaluation, which
moves no step for longer than the timeout, is left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid

import pytest
from sqlalchemy import create_engine, text

from core.settings import Settings
from tests.conftest import wait_for_state
from tests.test_faults import (  # noqa: F401 - fixtures
    FAULT_SPEC,
    Stack,
    _stack_env,
    _submit,
    _wait_for_epoch,
    redis_server,
    services,
    start_api_and_worker,
)
from worker.stall import StallWatch


def _training_pid(worker_log: str, job_id: str, attempt: int) -> int:
    """The pid of the attempt's training process, as its supervisor logged it."""
    pattern = re.compile(rf"job {job_id} attempt {attempt}: training child pid (\d+)")
    return int(pattern.search(worker_log).group(1))


def _stack(fresh_database, redis_server, tmp_path, services, **extra: str):  # noqa: F811
    stack = Stack(_stack_env(fresh_database, redis_server.url, tmp_path / "data", **extra),
                  tmp_path)
    worker = start_api_and_worker(stack, services, "only")
    return stack, worker


def _wait_for_attempt(client, job_id: str, attempt: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] == "running" and job["attempt"] == attempt and job["progress"]["step"]:
            return
        assert time.monotonic() < deadline, f"attempt {attempt} never trained: {job}"
        time.sleep(0.05)


def test_a_stopped_training_process_is_retried_then_failed_with_the_stall(
    fresh_database, redis_server, tmp_path, services  # noqa: F811
):
    stack, worker = _stack(fresh_database, redis_server, tmp_path, services,
                           TRAINDOCK_STALL_TIMEOUT_S="3")
    with stack.client() as client:
        job_id = _submit(client, FAULT_SPEC | {"max_attempts": 2})
        for attempt in (1, 2):
            _wait_for_attempt(client, job_id, attempt)
            pid = _training_pid(worker.log(), job_id, attempt)
            os.kill(pid, signal.SIGSTOP)  # frozen: no step, no CPU, its lease still renewed
            try:
                if attempt == 1:
                    deadline = time.monotonic() + 60
                    while client.get(f"/v1/jobs/{job_id}").json()["attempt"] == 1:
                        assert time.monotonic() < deadline, "attempt 1 was never retried"
                        time.sleep(0.1)
                else:
                    job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=60)
            finally:
                with contextlib.suppress(ProcessLookupError):  # killed, as it should be
                    os.kill(pid, signal.SIGCONT)
    assert job["state"] == "failed", job
    assert job["attempt"] == 2
    assert re.search(r"^no progress for \d+ s at step \d+: the training process used no CPU",
                     job["error"]), job["error"]
    assert "TRAINDOCK_STALL_TIMEOUT_S" in job["error"]
    assert "(attempt 2 of 2; no attempts left)" in job["error"]
    assert "killing the child" in worker.log()


# Cheap to train (one step), slow to evaluate: wide convolutions over ~700 validation
# samples in one batch, on one thread: about 5 s with no step moving on the 2-core machine.
SLOW_EVALUATION = {
    "name": "slow-evaluation",
    "dataset": {"name": "digits", "val_fraction": 0.5},
    "model": {"layers": [
        {"type": "conv2d", "out_channels": 32, "padding": "same"}, {"type": "relu"},
        *[{"type": "conv2d", "out_channels": 256, "padding": "same"}, {"type": "relu"}] * 4,
        {"type": "flatten"}, {"type": "linear", "out_features": 10},
    ]},
    "training": {"epochs": 1, "max_steps": 1, "batch_size": 16},
    "max_attempts": 1,
}


def test_a_long_evaluation_is_not_taken_for_a_stall(
    fresh_database, redis_server, tmp_path, services  # noqa: F811
):
    timeout_s = 1.0
    stack, worker = _stack(fresh_database, redis_server, tmp_path, services,
                           TRAINDOCK_STALL_TIMEOUT_S=str(timeout_s), TRAINDOCK_CPU_THREADS="1")
    with stack.client() as client:
        job_id = _submit(client, SLOW_EVALUATION)
        job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=180)
    assert job["state"] == "succeeded", job["error"]
    assert job["attempt"] == 1
    # The test means something only if the evaluation outlasted the timeout: from the last
    # training point to the validation point, written after the evaluation, at one step.
    engine = create_engine(Settings(database_url=fresh_database).sqlalchemy_url)
    with engine.connect() as conn:
        times = dict(conn.execute(text(
            "SELECT k.name, m.wall_time FROM metric m JOIN metric_key k ON k.id = m.key_id "
            "WHERE m.job_id = :job AND k.name IN ('train_loss_step', 'val_loss')"),
            {"job": uuid.UUID(job_id)}).all())
    engine.dispose()
    evaluation_s = (times["val_loss"] - times["train_loss_step"]).total_seconds()
    assert evaluation_s > timeout_s, f"the evaluation took only {evaluation_s:.1f} s"


@pytest.mark.parametrize(("samples", "stalled_after"), [
    # (seconds, CPU seconds) every second
    ([(t, 0.0) for t in range(6)], 5),  # no CPU from the start
    ([(t, 0.5 * t) for t in range(6)], None),  # half a core: training
    ([(t, min(t, 3) * 0.5) for t in range(12)], 8),  # stopped at 3 s: 5 s later
    ([(t, 0.004 * t) for t in range(8)], 5),  # under 1% of a core: waiting, not working
])
def test_the_stall_watch_counts_cpu_time_over_the_window(samples, stalled_after):
    watch = StallWatch(5.0)
    found = None
    for now, cpu in samples:
        if watch.observe(float(now), cpu) is not None and found is None:
            found = now
    assert found == stalled_after


def test_the_stall_watch_forgets_time_it_is_told_not_to_count():
    watch = StallWatch(5.0)
    for now in range(4):
        assert watch.observe(float(now), 1.0) is None
    watch.restart()  # e.g. the database was away
    for now in range(4, 9):
        assert watch.observe(float(now), 1.0) is None
    assert watch.observe(9.0, 1.0) == 5.0
