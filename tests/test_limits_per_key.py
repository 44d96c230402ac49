"""Limits per API key and per owner, on a real API process that asks for keys: requests per
second per key (429 with Retry-After), and queued-plus-running jobs per owner."""

from __future__ import annotations

import time

import httpx
import pytest

from core.settings import Settings
from tests.conftest import load_example, make_api_key, start_api


@pytest.fixture
def limited(service_env, fresh_database, tmp_path):
    """An API with keys on, on a database no worker sees (submitted jobs stay queued)."""
    env = service_env | {"TRAINDOCK_DATABASE_URL": fresh_database,
                         "TRAINDOCK_DATA_DIR": str(tmp_path / "data"),
                         "TRAINDOCK_AUTH": "on", "TRAINDOCK_RATE_LIMIT_PER_S": "2",
                         "TRAINDOCK_RATE_LIMIT_BURST": "4",
                         "TRAINDOCK_MAX_ACTIVE_JOBS_PER_OWNER": "2"}
    service, url = start_api(env, tmp_path)
    settings = Settings(database_url=fresh_database)
    yield url, lambda owner: make_api_key(settings, "read,submit", owner=owner)
    service.stop()


def _client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"})


def test_a_key_past_its_rate_gets_429_with_retry_after_and_others_do_not(limited):
    url, make_key = limited
    fast, other = make_key("ana"), make_key("ben")
    with _client(url, fast) as client, _client(url, other) as calm:
        answers = [client.get("/v1/jobs") for _ in range(10)]
        codes = [a.status_code for a in answers]
        assert codes[:4] == [200] * 4, codes  # the burst
        refused = [a for a in answers if a.status_code == 429]
        assert refused, codes
        assert "TRAINDOCK_RATE_LIMIT_PER_S" in refused[0].json()["detail"]
        wait = int(refused[0].headers["retry-after"])
        assert 1 <= wait <= 2
        assert calm.get("/v1/jobs").status_code == 200  # another key's bucket is its own
        time.sleep(wait)
        assert client.get("/v1/jobs").status_code == 200
    # Open routes are not counted.
    assert all(httpx.get(f"{url}/healthz").status_code == 200 for _ in range(10))


def test_an_owner_past_its_active_jobs_gets_429_naming_the_setting(limited):
    url, make_key = limited
    spec = load_example("digits-mlp")
    with _client(url, make_key("ana")) as ana, _client(url, make_key("ben")) as ben:
        first = ana.post("/v1/jobs", json=spec).json()
        time.sleep(0.6)  # inside the key's rate
        assert ana.post("/v1/jobs", json=spec).status_code == 201
        time.sleep(0.6)
        third = ana.post("/v1/jobs", json=spec)
        assert third.status_code == 429, third.text
        assert "TRAINDOCK_MAX_ACTIVE_JOBS_PER_OWNER" in third.json()["detail"]
        assert third.headers["retry-after"] == "60"
        assert ben.post("/v1/jobs", json=spec).status_code == 201  # another owner's count
        time.sleep(0.6)
        assert ana.post(f"/v1/jobs/{first['id']}/cancel").status_code == 202
        time.sleep(0.6)
        assert ana.post("/v1/jobs", json=spec).status_code == 201  # room again
