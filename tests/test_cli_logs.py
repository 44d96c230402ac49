"""`traindock logs JOB [-f] [--attempt N] [--tail N]` run as a user runs it, in a child
process, against the real API and worker and a real job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from core.db import make_engine
from core.queue import Publisher
from core.repo import jobs as job_repo
from tests.conftest import ROOT, load_example, wait_for_state

ENV = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")} | {
    "PYTHONPATH": str(ROOT)}
FINAL = {"succeeded", "failed", "cancelled"}
READY = "ready to train after"


def traindock(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=120)


class Running:
    """`traindock ARGS` in the background, its output in files that the test reads as it
    goes; Ctrl-C reaches it (a test run in the background inherits SIGINT ignored)."""

    def __init__(self, tmp_path: Path, name: str, *args: str) -> None:
        self.out, self.err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=ENV, stdout=out,
                stderr=err, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def wait_for(self, text: str, stream: str = "out", timeout: float = 120) -> None:
        path = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        while text not in path.read_text(errors="replace"):
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.stderr()}"
            assert time.monotonic() < deadline, f"{text!r} not printed in {timeout}s"
            time.sleep(0.2)

    def stdout(self) -> str:
        return self.out.read_text()

    def stderr(self) -> str:
        return self.err.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def finished(api_url: str, worker) -> str:
    spec = load_example("digits-mlp") | {"name": "cli-logs-ok"}
    spec["training"] = spec["training"] | {"epochs": 1}
    with httpx.Client(base_url=api_url, timeout=30) as client:
        job_id = client.post("/v1/jobs", json=spec).json()["id"]
        assert wait_for_state(client, job_id, FINAL)["state"] == "succeeded"
    return job_id


def test_logs_prints_the_attempts_log(finished, api_url, client):
    result = traindock("logs", finished[:8], "--url", api_url)
    assert result.returncode == 0, result.stderr
    assert READY in result.stdout
    assert result.stdout == client.get(f"/v1/jobs/{finished}/logs").text

    result = traindock("logs", finished, "--tail", "1", "--url", api_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stdout.splitlines(keepends=True)[-1]
    assert result.stdout.endswith(client.get(f"/v1/jobs/{finished}/logs").text
                                  .splitlines(keepends=True)[-1])
    assert result.stderr == ""

    result = traindock("logs", finished[:8], "--attempt", "2", "--url", api_url)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (f"error: job {finished} has no attempt 2; its attempts "
                                     "are 1 to 1, and those with a log: 1")


def test_follow_waits_for_the_start_and_ends_with_the_attempt(api_url, worker, client,
                                                              settings, tmp_path):
    spec = load_example("digits-mlp") | {"name": "cli-logs-follow"}
    spec["training"] = spec["training"] | {"epochs": 5000, "batch_size": 32}
    engine = make_engine(settings)
    try:
        # Queued with no message to the broker: no worker starts it until it is published.
        with Session(engine) as session, session.begin():
            job_id = str(job_repo.create_job(session, name="cli-logs-follow", spec=spec,
                                             max_attempts=1, model_summary={},
                                             total_steps=10**6).id)
    finally:
        engine.dispose()
    waiting = Running(tmp_path, "waiting", "logs", job_id[:8], "-f", "--url", api_url)
    interrupted: Running | None = None
    try:
        waiting.wait_for("queued: waiting for a worker", stream="err", timeout=60)
        assert Publisher(settings).publish(job_id)
        waiting.wait_for(READY)

        interrupted = Running(tmp_path, "interrupted", "logs", job_id, "--follow", "--url",
                              api_url)
        interrupted.wait_for(READY, timeout=60)
        interrupted.proc.send_signal(signal.SIGINT)
        assert interrupted.proc.wait(30) == 130
        assert interrupted.stderr() == ""  # quietly: no traceback, no message

        assert waiting.proc.poll() is None, "-f ended while the attempt was running"
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
        assert waiting.proc.wait(60) == 0
        assert wait_for_state(client, job_id, FINAL)["state"] == "cancelled"
        assert waiting.stdout() == client.get(f"/v1/jobs/{job_id}/logs").text
        assert waiting.stderr().splitlines()[-1] == "-- attempt 1 is over; job state: cancelled"
    finally:
        waiting.stop()
        if interrupted is not None:
            interrupted.stop()
        client.post(f"/v1/jobs/{job_id}/cancel")
