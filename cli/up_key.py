"""`traindock up`'s admin key: made on the first start (when no admin key is active), its token
printed once and kept in DATA_DIR/admin-api-key (mode 0600) so that the user can find it again;
later starts say where it is and print nothing secret. The database keeps only its hash."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import sessionmaker

from core.db import make_engine
from core.repo.api_keys import active_admin_key, create_key, free_name, is_usable, key_by_token
from core.settings import Settings

KEY_FILE = "admin-api-key"
ADMIN_SCOPES = ["read", "submit", "admin"]


@dataclass(frozen=True)
class AdminKey:
    name: str
    path: Path
    token: str | None  # only when made by this start
    in_file: bool  # whether `path` holds an active admin key's token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def write_private(path: Path, text: str) -> None:
    """Created 0600 from the start (never readable by others, not even for a moment)."""
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def ensure_admin_key(settings: Settings) -> AdminKey:
    path = settings.data_dir / KEY_FILE
    engine = make_engine(settings, pool_size=1)
    try:
        with sessionmaker(engine, expire_on_commit=False)() as session:
            saved = path.read_text().strip() if path.is_file() else ""
            if saved:
                key = key_by_token(session, saved)
                if key is not None and is_usable(key) and "admin" in key.scopes:
                    return AdminKey(key.name, path, None, True)
            existing = active_admin_key(session)
            if existing is not None:
                return AdminKey(existing.name, path, None, False)
            key, token = create_key(session, free_name(session, "admin"), ADMIN_SCOPES)
            write_private(path, token + "\n")
            session.commit()
            return AdminKey(key.name, path, token, True)
    finally:
        engine.dispose()


def banner_lines(key: AdminKey) -> list[str]:
    if key.token:
        return [f"  API key    {key.token}",
                f"             (admin key {key.name!r}, shown once; kept in {key.path}, mode 600)",
                f"             export TRAINDOCK_API_KEY=$(cat {key.path})"]
    if key.in_file:
        return [f"  API key    admin key {key.name!r} in {key.path}",
                f"             export TRAINDOCK_API_KEY=$(cat {key.path})"]
    return [f"  API key    admin key {key.name!r} exists, but {key.path} does not hold it;",
            "             `traindock keys create --name NAME --scopes read,submit,admin` "
            "makes another"]
