"""One Ctrl-C of `traindock up` while a job trains is one preemption and no attempt: the
worker checkpoints the job, requeues it, and, shutting down, takes no job (not even the one
it has just requeued) but leaves its message for the next worker. After a restart the job
resumes from that checkpoint as its second attempt and succeeds with one preemption."""

from __future__ import annotations

import signal
import subprocess
import time

import httpx
import pytest

from cli.watch import summary_block
from tests.test_up import (
    EXIT_TIMEOUT_S,
    JOB_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    StartUp,
    small_job,
    start_up,  # noqa: F401 -- the fixture
)


def _wait_until_training(up, client: httpx.Client, job_id: str) -> None:
    """Until the job is some steps into its first attempt, past its first checkpoint."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        up.record_processes()
        job = client.get(f"{up.url}/v1/jobs/{job_id}").json()
        if job["state"] == "running" and job["progress"].get("epoch", 0) >= 2:
            return
        assert job["state"] in ("queued", "running"), job
        assert time.monotonic() < deadline, f"not training: {job}{up.log_tail()}"
        time.sleep(0.2)


@pytest.mark.timeout(2 * STARTUP_TIMEOUT_S + 2 * JOB_TIMEOUT_S + 2 * EXIT_TIMEOUT_S)
def test_one_ctrl_c_of_up_is_one_preemption_and_no_attempt(start_up: StartUp) -> None:  # noqa: F811
    first = start_up()
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        first.wait_until_healthy(client)
        created = client.post(f"{first.url}/v1/jobs", json=small_job(epochs=40))
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        _wait_until_training(first, client, job_id)

    first.process.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends `up`
    try:
        assert first.process.wait(timeout=EXIT_TIMEOUT_S) == 0, first.log_tail()
    except subprocess.TimeoutExpired:
        pytest.fail(f"up did not stop within {EXIT_TIMEOUT_S:.0f} s{first.log_tail()}")
    logs = first.data_dir / "logs" / job_id
    # One training process for the job: none was started during the worker's shutdown. (Each
    # attempt's text log may have a JSON copy beside it, attempt-N.jsonl.)
    assert sorted(p.name for p in logs.glob("*.log")) == ["attempt-1.log"], first.log_tail()
    assert "checkpointed and stopped on request" in (logs / "attempt-1.log").read_text()

    second = start_up()
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        second.wait_until_healthy(client)
        job = second.wait_for_job(client, job_id)
    assert (job["attempt"], job["preemptions"]) == (2, 1), job
    # What people read: one attempt spent of the budget, and the stop beside it.
    assert f"attempt 1 of {job['max_attempts']} (1 preemption)" in summary_block(job)
    assert sorted(p.name for p in logs.glob("*.log")) == ["attempt-1.log", "attempt-2.log"]
    assert "resuming from" in (logs / "attempt-2.log").read_text()
    second.stop_and_check_nothing_is_left(signal.SIGTERM)
