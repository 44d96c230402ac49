"""POST /v1/jobs validates the spec in the thread pool before it takes a connection from the
async pool: a request must not hold a connection while it waits for a thread (api/deps.py
valid_job). The real app on a real PostgreSQL and Redis; the count is read from inside the
real validation, which it then runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.routes import jobs as jobs_routes
from core.settings import Settings
from tests.conftest import load_example, make_api_key


def test_submit_takes_no_async_connection_while_the_spec_is_validated(
    fresh_database: str, broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(database_url=fresh_database, broker_url=broker_url, data_dir=tmp_path)
    # With API keys on: the key's lookup takes a connection too, and must give it back first.
    key = {"Authorization": f"Bearer {make_api_key(settings, 'read,submit')}"}
    app = create_app(settings)
    pool = app.state.async_engine.engine.sync_engine.pool
    held_while_validating: list[int] = []
    validate_job = jobs_routes.validate_job

    def counting_validate_job(*args):
        held_while_validating.append(pool.checkedout())
        return validate_job(*args)

    monkeypatch.setattr(jobs_routes, "validate_job", counting_validate_job)
    with TestClient(app, base_url="http://localhost") as client:  # an allowed host name
        first = client.post("/v1/jobs", json=load_example("digits-mlp"),
                            headers={"Idempotency-Key": "submit-connection", **key})
        again = client.post("/v1/jobs", json=load_example("digits-mlp"),
                            headers={"Idempotency-Key": "submit-connection", **key})
        bad = client.post("/v1/jobs", json={**load_example("digits-mlp"),
                                            "training": {"epochs": 0}}, headers=key)

    assert first.status_code == 201, first.text
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert bad.status_code == 422
    assert held_while_validating == [0, 0], "a connection was held while validating"
    assert pool.checkedout() == 0
