"""Settings refuse unsafe values with a message that names the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [
        ("database_url", "sqlite:///jobs.db", "TRAINDOCK_DATABASE_URL must be a PostgreSQL URL"),
        ("broker_url", "amqp://guest@localhost//", "TRAINDOCK_BROKER_URL must start with"),
        ("lease_ttl_s", 1, "TRAINDOCK_LEASE_TTL_S must be between 3 and 3600"),
        ("data_dir", "/", "TRAINDOCK_DATA_DIR must not be the filesystem root"),
        ("max_attempts", 0, "greater than or equal to 1"),
    ],
)
def test_unsafe_values_are_refused(field, value, phrase):
    with pytest.raises(ValidationError) as info:
        Settings(**{field: value})
    assert phrase in str(info.value)


def test_environment_is_read_with_the_prefix(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINDOCK_DATABASE_URL", "postgresql://u@db:5432/x")
    monkeypatch.setenv("TRAINDOCK_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@db:5432/x"
    assert settings.checkpoint_dir == tmp_path / "checkpoints"


def test_socket_urls_from_the_embedded_server_are_accepted():
    url = "postgresql://postgres:@/postgres?host=/tmp/pg"
    assert Settings(database_url=url).sqlalchemy_url == (
        "postgresql+psycopg://postgres:@/postgres?host=/tmp/pg"
    )
