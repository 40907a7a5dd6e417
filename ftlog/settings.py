"""Every environment variable ftlog reads, with its default, in one place."""

from __future__ import annotations

import os
from pathlib import Path

DATABASE_URL = "FTLOG_DATABASE_URL"
BASE_URL = "FTLOG_BASE_URL"
API_KEY = "FTLOG_API_KEY"
NEBIUS_API_KEY = "NEBIUS_API_KEY"
CONFIG = "FTLOG_CONFIG"
PROFILE = "FTLOG_PROFILE"
NOTIFY_WEBHOOK = "FTLOG_NOTIFY_WEBHOOK"

DEFAULT_BASE_URL = "https://api.studio.nebius.com/v1"
API_KEY_VARIABLES = (API_KEY, NEBIUS_API_KEY)


def env(name: str) -> str | None:
    """The variable's value, or None when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def default_database_path() -> Path:
    """The embedded store: a SQLite file under the user data directory."""
    from platformdirs import user_data_path

    return user_data_path("ftlog", appauthor=False) / "ftlog.db"


def default_config_path() -> Path:
    """The config file read when neither --config nor FTLOG_CONFIG names one."""
    from platformdirs import user_config_path

    return user_config_path("ftlog", appauthor=False) / "config.toml"


def api_key_from_env() -> str | None:
    """The token from the first of FTLOG_API_KEY, NEBIUS_API_KEY that is set."""
    for name in API_KEY_VARIABLES:
        value = env(name)
        if value:
            return value
    return None
