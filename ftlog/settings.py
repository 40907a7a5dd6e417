"""Every environment variable ftlog reads, with its default, in one place.

Nothing else in ftlog spells a variable's name: options, help texts, ``ftlog config show`` and
the docs' tests take them from here. Importing this module is cheap (no pathlib, no
platformdirs until a default path is asked for): every command module imports it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

DATABASE_URL = "FTLOG_DATABASE_URL"
"""The store: a database URL or a SQLite path (``--db``)."""
BASE_URL = "FTLOG_BASE_URL"
"""The API's base URL (``--base-url``)."""
API_KEY = "FTLOG_API_KEY"
"""The API token, first choice."""
NEBIUS_API_KEY = "NEBIUS_API_KEY"
"""The API token, Nebius's own variable: second choice."""
CONFIG = "FTLOG_CONFIG"
"""The config file (``--config``)."""
PROFILE = "FTLOG_PROFILE"
"""The profile of the config file (``--profile``)."""
NOTIFY_WEBHOOK = "FTLOG_NOTIFY_WEBHOOK"
"""The webhook URL transitions are posted to (``--notify-webhook``)."""

OPTION_VARIABLES = {"database_url": DATABASE_URL, "base_url": BASE_URL}
"""The settings an environment variable gives when no command-line option does, by name.
(The webhook's variable comes before the profile's too; the token has an order of its own:
see :mod:`ftlog.config`.)"""
API_KEY_VARIABLES = (API_KEY, NEBIUS_API_KEY)
"""Where the token is looked for when neither ``--api-key`` nor the profile gives one."""
VARIABLES = (DATABASE_URL, BASE_URL, API_KEY, NEBIUS_API_KEY, CONFIG, PROFILE, NOTIFY_WEBHOOK)
"""Every variable ftlog reads (tests clear them all)."""

DEFAULT_BASE_URL = "https://api.studio.nebius.com/v1"
DEFAULT_CONCURRENCY = 8
"""Per-job requests in flight at once (``--concurrency``): fast on a real network, gentle on
an API."""


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


def default_database_url() -> str:
    """The embedded store's URL."""
    return f"sqlite:///{default_database_path()}"
