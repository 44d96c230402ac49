# ruff: noqa: F811 - the stack fixtures of tests/test_faults.py, imported, are parameters here
"""Faults A and B of issue 14, on real processes: a damaged newest checkpoint, a cancel during
a checkpoint write; and what came with them: deleting a job, and the retention of a finished
job's checkpoints. The stack (API, Redis, workers, a fresh database) is tests/test_faults.py's.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

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
