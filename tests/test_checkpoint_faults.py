# ruff: noqa: F811 - the stack fixtures of tests/test_faults.py, imported, are parameters here
"""Faults A and B of issue 14, on real processes: a damaged newest checkpoint, a cancel during
a checkpoint write; and what came with them: deleting a job, and the retention of a finished
job's checkpoints. The stack (API, Redis, workers, a fresh database) is tests/test_faults.py's.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import psycopg

from core.checkpoint_retention import beyond_retention
from tests.conftest import wait_for_state
from tests.test_faults import (  # noqa: F401 - fixtures
    FAULT_SPEC,
    Stack,
    _assert_same_as_uninterrupted,
    _stack_env,
    _submit,
    _wait_for_epoch,
    redis_server,
    services,
    stack,
    started_stack,
)
from worker.checkpoints import sha256_of


def _data(stack: Stack) -> Path:
    return Path(stack.env["TRAINDOCK_DATA_DIR"])


def _files(stack: Stack, job_id: str) -> list[str]:
    folder = _data(stack) / "checkpoints" / job_id
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _assert_rows_match_files(stack: Stack, client, job_id: str) -> list[dict]:
    """Every checkpoint row has its intact file, and every file its row."""
    rows = client.get(f"/v1/jobs/{job_id}/checkpoints").json()
    assert _files(stack, job_id) == sorted(f"step-{r['step']}.pt" for r in rows)
    for row in rows:
        path = _data(stack) / "checkpoints" / job_id / f"step-{row['step']}.pt"
        assert sha256_of(path) == row["sha256"], f"step {row['step']} is damaged"
    return rows


def test_a_damaged_newest_checkpoint_resumes_from_the_newest_intact_one(stack, services):
    first = stack.worker("first")
    services.append(first)
    with stack.client() as client:
        job_id = _submit(client, FAULT_SPEC)
        _wait_for_epoch(client, job_id, 5)
        os.killpg(first.proc.pid, signal.SIGKILL)  # the worker and its training child
        first.proc.wait()
        rows = client.get(f"/v1/jobs/{job_id}/checkpoints").json()
        assert len(rows) >= 2, rows
        newest, intact = rows[-1], rows[-2]
        damaged = _data(stack) / "checkpoints" / job_id / f"step-{newest['step']}.pt"
        with open(damaged, "r+b") as handle:  # flip bytes in the middle: the sha256 differs
            handle.seek(damaged.stat().st_size // 2)
            handle.write(b"\xff" * 64)

        services.append(stack.worker("second"))
        job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=180)
        assert job["state"] == "succeeded", job["error"]
        assert job["attempt"] == 2

        log = (_data(stack) / "logs" / job_id / "attempt-2.log").read_text()
        assert "starting over" not in log
        assert (f"step-{newest['step']}.pt (step {newest['step']}) is damaged (its sha256 "
                "differs from the one recorded): skipped") in log
        resumed_from = damaged.parent / f"step-{intact['step']}.pt"
        assert f"resuming from {resumed_from} (step {intact['step']})" in log
        _assert_rows_match_files(stack, client, job_id)
        _assert_same_as_uninterrupted(client, job_id)


def test_with_every_checkpoint_damaged_a_restart_keeps_what_it_writes(stack, services):
    """Start over, below the old attempt's higher steps: what the new attempt writes must
    survive retention (the old code ranked the damaged rows above it and deleted it)."""
    first = stack.worker("first")
    services.append(first)
    with stack.client() as client:
        job_id = _submit(client, FAULT_SPEC)
        _wait_for_epoch(client, job_id, 5)
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        old = client.get(f"/v1/jobs/{job_id}/checkpoints").json()
        assert len(old) >= 2, old
        for row in old:
            (_data(stack) / "checkpoints" / job_id / f"step-{row['step']}.pt").write_bytes(b"x")

        second = stack.worker("second")
        services.append(second)
        attempt_log = _data(stack) / "logs" / job_id / "attempt-2.log"
        deadline = time.monotonic() + 120
        while True:  # until attempt 2 has set the progress back and trained 2 epochs
            job = client.get(f"/v1/jobs/{job_id}").json()
            ready = attempt_log.is_file() and "ready to train" in attempt_log.read_text()
            if ready and job["progress"].get("epoch", 0) >= 2:
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        second.proc.send_signal(signal.SIGTERM)  # checkpoint mid-epoch, requeue
        second.proc.wait(60)
        log = attempt_log.read_text()
        assert f"no intact checkpoint among {len(old)}: starting over" in log
        rows = _assert_rows_match_files(stack, client, job_id)
        assert rows[-1]["metrics"] == {}, rows  # the stop's checkpoint, the newest row

        services.append(stack.worker("third"))
        job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=180)
        assert job["state"] == "succeeded", job["error"]
        assert "resuming from" in (_data(stack) / "logs" / job_id / "attempt-3.log").read_text()
        _assert_same_as_uninterrupted(client, job_id)


def _row(id_: int, step: int, val_loss: float | None = None) -> SimpleNamespace:
    return SimpleNamespace(id=id_, step=step,
                           metrics={} if val_loss is None else {"val_loss": val_loss})


def test_retention_keeps_what_an_attempt_resumed_from_and_wrote_last():
    """A resumed attempt below older, higher-step rows (which its resume did not delete,
    e.g. written by an attempt that is still finishing): the newest by step outrank what it
    writes, but neither its resume point nor its last checkpoint is deleted."""
    rows = [_row(1, 10, 0.9), _row(2, 20), _row(5, 25), _row(3, 30), _row(4, 40)]
    doomed = beyond_retention(rows, FAULT_SPEC, keep=2, protected=(2, 5))
    assert [r.id for r in doomed] == []  # 1 is the best; 2 resumed from; 5 written last
    doomed = beyond_retention(rows, FAULT_SPEC, keep=2, protected=(None, 5))
    assert [r.id for r in doomed] == [2]
    assert [r.id for r in beyond_retention(rows, FAULT_SPEC, keep=1)] == [2, 5, 3]


# About 16 M parameters: with Adam's state a checkpoint of about 190 MB, which takes longer
# to write than the one second the supervisor gave a stopping child before its SIGKILL.
BIG_SPEC = {
    "name": "big-mlp",
    "dataset": {"name": "digits"},
    "model": {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 4000},
                         {"type": "relu"}, {"type": "linear", "out_features": 4000},
                         {"type": "relu"}, {"type": "linear", "out_features": 10}]},
    "training": {"epochs": 200, "batch_size": 16, "checkpoint_every_epochs": 0},
}


def test_a_cancel_writes_no_checkpoint_leaves_no_file_and_the_job_can_be_deleted(
    stack, services
):
    worker = stack.worker("only")
    services.append(worker)
    with stack.client() as client:
        job_id = _submit(client, BIG_SPEC)
        deadline = time.monotonic() + 120
        while client.get(f"/v1/jobs/{job_id}").json()["progress"].get("step", 0) < 20:
            assert time.monotonic() < deadline, "the job did not start training"
            time.sleep(0.1)

        refused = client.delete(f"/v1/jobs/{job_id}")
        assert refused.status_code == 409, refused.text
        assert "cancel it first" in refused.json()["detail"]

        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
        job = wait_for_state(client, job_id, {"cancelled"}, timeout=60)
        # The worker's last line of the attempt: its child has exited and it has tidied.
        worker.wait_for_log(f"job {job_id} attempt 1: cancelled (", timeout=60)
        log = (_data(stack) / "logs" / job_id / "attempt-1.log").read_text()
        assert "stopped on cancel, without a checkpoint" in log
        assert client.get(f"/v1/jobs/{job_id}/checkpoints").json() == []
        assert _files(stack, job_id) == [], "a cancel left checkpoint files behind"
        # Its points and progress were flushed on the way out.
        steps = client.get(f"/v1/jobs/{job_id}/metrics").json()["series"]["train_loss_step"]
        assert steps["step"] and steps["step"][-1] <= job["progress"]["step"]

        deleted = client.delete(f"/v1/jobs/{job_id}")
        assert deleted.status_code == 204, deleted.text
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 404
        malformed = client.delete("/v1/jobs/not-a-job-id")
        assert malformed.status_code == 422 and "job_id" in malformed.text, malformed.text
        assert not (_data(stack) / "logs" / job_id).exists()
        assert not (_data(stack) / "checkpoints" / job_id).exists()
        with psycopg.connect(stack.env["TRAINDOCK_DATABASE_URL"]) as conn:
            for table in ("metric", "metric_rollup", "checkpoint"):
                count = conn.execute(f"SELECT count(*) FROM {table} WHERE job_id = %s",
                                     (job_id,)).fetchone()[0]
                assert count == 0, f"{table} kept {count} rows of the deleted job"


def test_a_finished_job_keeps_its_last_and_best_checkpoints(
    fresh_database, redis_server, tmp_path, services
):
    env = _stack_env(fresh_database, redis_server.url, tmp_path / "data",
                     TRAINDOCK_KEEP_CHECKPOINTS_FINISHED="1")
    stack = started_stack(env, tmp_path, services)
    spec = FAULT_SPEC | {"training": {"epochs": 6, "batch_size": 16, "seed": 3}}
    with stack.client() as client:
        job_id = _submit(client, spec)
        job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=120)
        assert job["state"] == "succeeded", job["error"]
        rows = _assert_rows_match_files(stack, client, job_id)
        assert rows[-1]["step"] == job["progress"]["total_steps"]
        assert len(rows) <= 2 and any(r["best"] for r in rows), rows
