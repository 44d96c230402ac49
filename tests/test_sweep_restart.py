"""A sweep survives its processes: the API and the worker are killed (SIGKILL, no goodbye)
while a trial trains, started again, and the sweep finishes with each trial's job created
once, the interrupted one resumed by the same job row rather than run again as a new trial."""

from __future__ import annotations

import os
import signal
import time

import psycopg

from tests.test_faults import (  # noqa: F401 - the fixtures, by name
    Stack,
    _stack_env,
    redis_server,
    services,
    start_api_and_worker,
)
from tests.test_sweeps import tiny_base, wait_for_sweep


def _kill(service) -> None:
    os.killpg(service.proc.pid, signal.SIGKILL)
    service.proc.wait()
    service.log_file.close()


def test_a_sweep_survives_a_restart_of_the_api_and_the_worker(
    fresh_database, redis_server, tmp_path, services  # noqa: F811
):
    stack = Stack(_stack_env(fresh_database, redis_server.url, tmp_path / "data"), tmp_path)
    worker = start_api_and_worker(stack, services, "before")
    body = {"base": tiny_base(max_steps=20), "method": "grid", "parallelism": 1,
            "parameters": {"optimizer.lr": {"values": [0.01, 0.1]}}}
    with stack.client() as http:
        created = http.post("/v1/sweeps", json=body)
        assert created.status_code == 201, created.text
        sweep_id = created.json()["id"]
        first = created.json()["trials"][0]["jobs"][0]["id"]
        deadline = time.monotonic() + 60
        while http.get(f"/v1/jobs/{first}").json()["state"] != "running":
            assert time.monotonic() < deadline, "the first trial never started"
            time.sleep(0.1)
    _kill(worker)
    _kill(stack.api)

    start_api_and_worker(stack, services, "after")
    with stack.client() as http:
        sweep = wait_for_sweep(http, sweep_id, {"succeeded", "failed"}, timeout=240)
    assert sweep["state"] == "succeeded", sweep
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute("SELECT id, trial_number, trial_repeat, attempt, state FROM job "
                            "WHERE sweep_id = %s ORDER BY trial_number", (sweep_id,)).fetchall()
    assert [(n, r, s) for _, n, r, _, s in rows] == [(0, 0, "succeeded"), (1, 0, "succeeded")]
    assert str(rows[0][0]) == first and rows[0][3] == 2  # the same row, its second attempt
    assert rows[1][3] == 1
