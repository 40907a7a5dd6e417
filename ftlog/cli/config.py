"""``ftlog config``: the config file and the settings it resolves to.

``config show`` prints the resolution every command uses (:mod:`ftlog.cli.options`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ftlog import settings
from ftlog.cli.options import config_file_option, profile_name_option, resolve

if TYPE_CHECKING:
    from pathlib import Path

_HELP = f"""The config file: named profiles and a price table (TOML).

\b
Settings are taken, highest first, from: the command-line option, its environment
variable (${settings.BASE_URL}, ${settings.DATABASE_URL}, ${settings.NOTIFY_WEBHOOK}), the
profile (--profile, ${settings.PROFILE}, else the file's default_profile), the built-in
default. The token: --api-key, the variable named by the profile's api_key_env, its
api_key, ${settings.API_KEY}, ${settings.NEBIUS_API_KEY}.
"""


@click.group(help=_HELP)
def config() -> None:
    pass


@config.command()
@config_file_option()
@profile_name_option()
def show(config_path: Path | None, profile_name: str | None) -> None:
    """Print each setting the commands use, its value and where it comes from (secrets
    masked)."""
    rows = resolve(click.get_current_context(), config_path, profile_name).rows()
    header = ("setting", "value", "source")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(2)]
    for row in [header, *rows]:
        click.echo(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip())


@config.command()
@config_file_option()
def path(config_path: Path | None) -> None:
    """Print the config file's location, and (on stderr) whether it exists."""
    from ftlog.config import config_location

    location, source = config_location(config_path)
    click.echo(str(location))
    state = "exists" if location.is_file() else "does not exist"
    origin = "" if source == "default" else f", from {source}"
    click.echo(f"({state}{origin})", err=True)
