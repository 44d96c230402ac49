"""TRAINDOCK_WARM_CHILD: a worker keeps a training interpreter started ahead. It trains the
next job, from its stdin, exactly as a cold child would (same log, same cancel), the worker
starts the next one only once it has exited, and none outlives the worker."""

from __future__ import annotations

import os
import time

import psutil

from tests.conftest import load_example, start_api, start_worker, wait_for_state


def _warm_children(worker_pid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.Process(worker_pid).children():
        try:
            cmdline = proc.cmdline()
            if "worker.child" in cmdline and "--wait" in cmdline:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _one_warm_child(worker_pid: int, timeout: float = 60) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _warm_children(worker_pid)
        if found:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.05)
    raise AssertionError("the worker started no warm training child")


def test_the_warm_child_trains_the_next_job_and_a_new_one_waits_after_it(
        fresh_database, tmp_path):
    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")}
    env.update(TRAINDOCK_DATABASE_URL=fresh_database, TRAINDOCK_BROKER_URL="filesystem://",
               TRAINDOCK_DATA_DIR=str(tmp_path / "data"), TRAINDOCK_WARM_CHILD="true",
               TRAINDOCK_CANCEL_POLL_S="0.1", TRAINDOCK_AUTH="off", PYTHONUNBUFFERED="1")
    api, url = start_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            first = _one_warm_child(worker.proc.pid)
            spec = load_example("digits-mlp") | {"training": {"epochs": 2, "batch_size": 64}}
            job_id = client.post("/v1/jobs", json=spec).json()["id"]
            job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=120)
            assert job["state"] == "succeeded", job["error"]
            log = (tmp_path / "data" / "logs" / job_id / "attempt-1.log").read_text()
            assert f"warm training process {first.pid} took the job" in log
            assert "ready to train after" in log and "trained in" in log
            assert not first.is_running() or first.status() == psutil.STATUS_ZOMBIE

            second = _one_warm_child(worker.proc.pid)
            assert second.pid != first.pid
            long = load_example("digits-mlp") | {"training": {"epochs": 5000}}
            job_id = client.post("/v1/jobs", json=long).json()["id"]
            wait_for_state(client, job_id, {"running"}, timeout=60)
            deadline = time.monotonic() + 60
            while client.get(f"/v1/jobs/{job_id}").json()["progress"].get("step", 0) < 1:
                assert time.monotonic() < deadline, "the job never started training"
                time.sleep(0.1)
            asked = time.monotonic()
            assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
            job = wait_for_state(client, job_id, {"cancelled", "succeeded", "failed"},
                                 timeout=10)
            assert job["state"] == "cancelled"
            assert time.monotonic() - asked < 3.0
            assert not second.is_running() or second.status() == psutil.STATUS_ZOMBIE
            third = _one_warm_child(worker.proc.pid)
    finally:
        worker.stop()
        api.stop()
    deadline = time.monotonic() + 10
    while third.is_running() and third.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the warm child outlived its worker"
        time.sleep(0.1)


def _trained_by(data_dir, job_id: str) -> int:
    """The pid of the warm process that took the job, from its attempt's log."""
    log = (data_dir / "logs" / job_id / "attempt-1.log").read_text()
    assert log.count("took the job") == 1, log  # each job's log is its own
    return int(log.split("warm training process ", 1)[1].split()[0])


def test_a_warm_child_trains_jobs_in_a_row_up_to_the_limit_with_a_fresh_process_s_results(
        fresh_database, tmp_path):
    """TRAINDOCK_WARM_CHILD_JOBS=2: the second job is trained by the process that trained the
    first, to the very same numbers (nothing of the first job leaks into it), and the third by
    a new process."""
    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")}
    env.update(TRAINDOCK_DATABASE_URL=fresh_database, TRAINDOCK_BROKER_URL="filesystem://",
               TRAINDOCK_DATA_DIR=str(tmp_path / "data"), TRAINDOCK_WARM_CHILD="true",
               TRAINDOCK_WARM_CHILD_JOBS="2", TRAINDOCK_AUTH="off", PYTHONUNBUFFERED="1")
    api, url = start_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    spec = load_example("digits-mlp") | {"training": {"epochs": 1, "batch_size": 64}}
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            jobs = []
            for _ in range(3):
                job_id = client.post("/v1/jobs", json=spec).json()["id"]
                job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=120)
                assert job["state"] == "succeeded", job["error"]
                jobs.append(job)
            pids = [_trained_by(tmp_path / "data", job["id"]) for job in jobs]
            assert pids[0] == pids[1] != pids[2], pids
            assert jobs[1]["startup"]["warm"] and jobs[1]["startup"]["imports_s"] < 0.5
            def results(job: dict) -> dict:
                return {k: v for k, v in job["summary"]["latest"].items() if k != "samples_per_s"}

            assert results(jobs[0]) == results(jobs[1])
            assert [client.get(f"/v1/jobs/{j['id']}/checkpoints").json() != [] for j in jobs] \
                == [True] * 3
            assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == \
                psutil.STATUS_ZOMBIE  # past its limit, it was ended
            assert _one_warm_child(worker.proc.pid).pid == pids[2]  # waiting for a 4th
    finally:
        worker.stop()
        api.stop()
