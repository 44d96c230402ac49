"""Where the client verbs find their API key and URL when the command line does not give them:
the environment, then a TOML file.

    TRAINDOCK_API_KEY, else TRAINDOCK_TOKEN (its older name), else `api_key` in the file
    TRAINDOCK_URL, else `url` in the file, else http://127.0.0.1:8000

The file is $TRAINDOCK_CONFIG, else $XDG_CONFIG_HOME/traindock/config.toml, else
~/.config/traindock/config.toml; a missing file is no error. Keep it private (chmod 600).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A config file that cannot be read; the message names it and what to fix."""


def config_path() -> Path:
    if os.environ.get("TRAINDOCK_CONFIG"):
        return Path(os.environ["TRAINDOCK_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "traindock" / "config.toml"


def read_config(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); write it as "
                          'api_key = "td_..." and url = "http://host:8000"') from exc
    for name in ("api_key", "url"):
        if name in data and not isinstance(data[name], str):
            raise ConfigError(f"{path}: {name} must be a string in quotes")
    return data


def api_key_from_environment() -> str | None:
    """The key from the environment, else the config file; None when neither has one."""
    for name in ("TRAINDOCK_API_KEY", "TRAINDOCK_TOKEN"):
        if os.environ.get(name):
            return os.environ[name].strip()
    return read_config().get("api_key") or None


def default_url(fallback: str) -> str:
    if os.environ.get("TRAINDOCK_URL"):
        return os.environ["TRAINDOCK_URL"]
    try:
        return read_config().get("url") or fallback
    except ConfigError:
        return fallback  # reported when the key is read, with its reason
