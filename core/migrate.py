"""Apply or revert the Alembic migrations (used by `traindock migrate`, `up` and the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(sqlalchemy_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' is Alembic's interpolation character; URLs may contain it (escaped passwords).
    config.set_main_option("sqlalchemy.url", sqlalchemy_url.replace("%", "%%"))
    return config


def upgrade(sqlalchemy_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(sqlalchemy_url), revision)


def downgrade(sqlalchemy_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(sqlalchemy_url), revision)
