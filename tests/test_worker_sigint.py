"""Ctrl-C in the terminal of a worker: SIGINT reaches its whole process group, the training
process included. The training process must take it as it takes the worker's SIGTERM: finish
the step, checkpoint in the middle of the epoch, exit as preempted. The job costs no attempt
and resumes exactly on the next worker."""

from __future__ import annotations

import os
import signal
import time

import psutil

from tests.conftest import wait_for_state
from tests.test_faults import (  # noqa: F401 -- redis_server, services, stack: fixtures
    FAULT_SPEC,
    _assert_same_as_uninterrupted,
    _submit,
    _wait_for_epoch,
    redis_server,
    services,
    stack,
)


def test_ctrl_c_checkpoints_mid_epoch_and_costs_no_attempt(stack, services):  # noqa: F811
    first = stack.worker("first")
    services.append(first)
    with stack.client() as client:
        job_id = _submit(client, FAULT_SPEC)
        _wait_for_epoch(client, job_id, 2)
        os.killpg(first.proc.pid, signal.SIGINT)  # the worker runs in a session of its own
        first.proc.wait(30)
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "queued", job
        assert (job["attempt"], job["preemptions"]) == (1, 1)
        mid_epoch = client.get(f"/v1/jobs/{job_id}/checkpoints").json()[-1]
        assert mid_epoch["metrics"] == {}  # written by the stop, not at an epoch's end
        log = (stack.logs / "data" / "logs" / job_id / "attempt-1.log").read_text()
        assert "checkpointed and stopped on request" in log, log
        assert "KeyboardInterrupt" not in log, log

        services.append(stack.worker("second"))
        job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=180)
        assert job["state"] == "succeeded", job["error"]
        assert (job["attempt"], job["preemptions"]) == (2, 1)

        _assert_same_as_uninterrupted(client, job_id)


def test_ctrl_c_while_the_training_process_starts_costs_no_attempt(stack, services):  # noqa: F811
    """The signal lands while the training process is still importing, before it can take it
    as a request to stop, and kills it: that is a stop by the shutdown all the same."""
    stack.env["TRAINDOCK_WARM_CHILD"] = "false"  # a cold process, started for the job
    first = stack.worker("first")
    services.append(first)
    with stack.client() as client:
        job_id = _submit(client, FAULT_SPEC)
        deadline = time.monotonic() + 60
        while not any(job_id in " ".join(child.cmdline())
                      for child in psutil.Process(first.proc.pid).children()):
            assert time.monotonic() < deadline, first.log()[-3000:]
            time.sleep(0.01)
        os.killpg(first.proc.pid, signal.SIGINT)
        first.proc.wait(30)
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "queued", job
        assert (job["attempt"], job["preemptions"]) == (1, 1), job
