"""A full disk on real processes: the checkpoint folder is a small tmpfs (mounting one needs
root), so a checkpoint write fails with ENOSPC as on a full DATA_DIR, without filling the
machine's disk. The job must name the cause, wait, and resume once there is room.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import wait_for_state
from tests.test_faults import (  # noqa: F401 - fixtures
    FAULT_SPEC,
    _stack_env,
    _submit,
    redis_server,
    services,
    started_stack,
)
from worker.disk_full import DiskFull, disk_full


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@pytest.fixture
def tiny_checkpoint_disk(tmp_path):
    """DATA_DIR/checkpoints on a 64 KiB tmpfs: no checkpoint of FAULT_SPEC (~0.3 MB) fits."""
    folder = tmp_path / "data" / "checkpoints"
    folder.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder))
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_a_full_disk_names_the_cause_and_the_job_resumes_once_there_is_room(
    fresh_database, redis_server, tmp_path, services, tiny_checkpoint_disk  # noqa: F811
):
    # The requeued job waits TRAINDOCK_REPUBLISH_AFTER_S before the reaper publishes it.
    env = _stack_env(fresh_database, redis_server.url, tmp_path / "data",
                     TRAINDOCK_REPUBLISH_AFTER_S="6")
    stack = started_stack(env, tmp_path, services)
    spec = FAULT_SPEC | {"training": {"epochs": 3, "batch_size": 16, "seed": 3}}
    with stack.client() as client:
        job_id = _submit(client, spec)
        deadline = time.monotonic() + 120
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["state"] == "queued" and job["attempt"] == 1:
                break
            assert job["state"] in ("queued", "running"), job
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        error = job["error"]
        assert error.startswith("attempt 1: no space left on device writing checkpoint "
                                 "step-"), error
        assert f"to {tiny_checkpoint_disk / job_id}" in error
        assert "free space in DATA_DIR" in error
        assert "retried in about 6 s" in error
        assert "unexpected pos" not in error
        assert _files(tiny_checkpoint_disk) == []  # the partial file is gone

        assert _mount("-o", "remount,size=64m", str(tiny_checkpoint_disk)).returncode == 0
        job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=120)
        assert job["state"] == "succeeded", job["error"]
        assert job["attempt"] == 2 and job["error"] is None
        checkpoints = client.get(f"/v1/jobs/{job_id}/checkpoints").json()
        assert checkpoints and checkpoints[-1]["step"] == job["progress"]["total_steps"]
        assert sorted(p.name for p in _files(tiny_checkpoint_disk)) == sorted(
            f"step-{c['step']}.pt" for c in checkpoints)


def test_torch_s_error_on_a_full_device_is_told_apart(tmp_path):
    """torch.save onto /dev/full (every write: ENOSPC) fails with the OSError itself or with
    torch's zip-writer RuntimeError around it (as on a tmpfs filling mid-file, above); both are
    a full disk. Any other failure is left as it is."""
    payload = {"model": {"w": torch.zeros(1 << 16)}}
    with (open("/dev/full", "wb", buffering=0) as handle,
          pytest.raises((RuntimeError, OSError)) as raised):
        torch.save(payload, handle)
    full = disk_full(raised.value, tmp_path / "7" / "step-3.pt", payload)
    assert isinstance(full, DiskFull), raised.value
    assert str(full).startswith(f"no space left on device writing checkpoint step-3.pt to "
                                f"{tmp_path / '7'} (")
    assert "a checkpoint of this job takes about 0.2 MB" in str(full)
    assert disk_full(RuntimeError("unexpected pos 704 vs 598"), tmp_path, payload) is None
    assert disk_full(PermissionError(13, "denied"), tmp_path, payload) is None
