"""Migrations up and down on a fresh PostgreSQL database, and in step with core/tables.py."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from core.migrate import downgrade, upgrade
from core.settings import Settings
from core.tables import Base
from tests.conftest import create_database, drop_database

TABLES = {"job", "metric", "metric_key", "metric_rollup", "checkpoint", "worker", "dataset",
          "webhook_delivery", "webhook_secret", "api_key", "sweep"}
SWEEPS = {"sweep"}
WEBHOOKS = {"webhook_delivery", "webhook_secret"}
KEYS = {"api_key"}
JOB = uuid.UUID("00000000-0000-0000-0000-000000000011")


@pytest.fixture
def fresh_url():
    name = f"traindock_migr_{uuid.uuid4().hex[:8]}"
    url = Settings(database_url=create_database(name)).sqlalchemy_url
    yield url
    drop_database(name)


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(fresh_url):
    upgrade(fresh_url)
    assert _tables(fresh_url) == TABLES
    downgrade(fresh_url, "base")
    assert _tables(fresh_url) == set()
    upgrade(fresh_url)
    assert _tables(fresh_url) == TABLES


def test_each_revision_reverts_on_its_own(fresh_url):
    upgrade(fresh_url)
    downgrade(fresh_url, "0008_key_expiry")
    assert _tables(fresh_url) == TABLES - SWEEPS
    before_sweeps = TABLES - SWEEPS
    downgrade(fresh_url, "0006_webhooks")
    assert _tables(fresh_url) == before_sweeps - KEYS
    downgrade(fresh_url, "0005_job_startup")
    assert _tables(fresh_url) == before_sweeps - KEYS - WEBHOOKS
    downgrade(fresh_url, "0003_datasets")
    assert _tables(fresh_url) == before_sweeps - KEYS - WEBHOOKS - {"metric_rollup"}
    downgrade(fresh_url, "0002_leases_and_workers")
    assert _tables(fresh_url) == before_sweeps - KEYS - WEBHOOKS - {"metric_rollup", "dataset"}
    downgrade(fresh_url, "0001_initial")
    assert _tables(fresh_url) == before_sweeps - KEYS - WEBHOOKS - {"metric_rollup", "dataset",
                                                                     "worker"}
    upgrade(fresh_url)
    assert _tables(fresh_url) == TABLES


def test_migrations_match_the_table_definitions(fresh_url):
    upgrade(fresh_url)
    engine = create_engine(fresh_url)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_pruned_is_a_final_state_with_its_own_webhook_and_reverts_to_failed(fresh_url):
    upgrade(fresh_url)
    engine = create_engine(fresh_url)
    notify = '{"notify": {"url": "https://hooks.example.com/x"}}'
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO job (id, name, spec, state, summary) VALUES (:id, 'j', "
                "CAST(:spec AS jsonb), 'running', CAST(:summary AS jsonb))"),
                {"id": JOB, "spec": notify, "summary": '{"diagnosis": {"final": true, '
                 '"step": 3, "findings": []}}'})
            conn.execute(text("UPDATE job SET state = 'pruned', error = 'pruned at step 3' "
                              "WHERE id = :id"), {"id": JOB})
            payload = conn.execute(text(
                "SELECT payload FROM webhook_delivery WHERE job_id = :id AND event = 'pruned'"),
                {"id": JOB}).scalar_one()
        assert payload["type"] == "job.pruned"
        assert payload["data"]["error"] == "pruned at step 3"
        assert payload["data"]["diagnosis"] == {"final": True, "step": 3, "findings": []}
        downgrade(fresh_url, "0010_sweeps")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT state FROM job WHERE id = :id"),
                                {"id": JOB}).scalar_one() == "failed"
        upgrade(fresh_url)
    finally:
        engine.dispose()
