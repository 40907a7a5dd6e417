"""``ftlog config``: the config file and the settings it resolves to; ``--profile`` wiring.

:func:`profile_options` puts ``--config`` and ``--profile`` on a command: an eager callback
loads the file and sets ``ctx.default_map`` from the profile, so click resolves each option
as command line > environment variable > profile > built-in default. The command gets the
selected :class:`ftlog.config.Profile` (or None) from :func:`current_profile`, and the price
table that applies from :func:`current_prices`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ftlog.cli.options import PathParam

if TYPE_CHECKING:
    from pathlib import Path

    from ftlog.config import Config, Profile
    from ftlog.pricing import PriceTable

F = TypeVar("F", bound=Callable[..., Any])

_PENDING = "ftlog.config.pending"
_PROFILE = "ftlog.config.profile"
_CONFIG = "ftlog.config.config"

_CONFIG_HELP = (
    "Config file. Default: $FTLOG_CONFIG, else config.toml in the user config directory "
    "(see: ftlog config path)."
)
_PROFILE_HELP = "Profile of the config file to use. Default: its default_profile."


def _config_file_option(**extra: Any) -> Callable[[F], F]:
    return click.option(
        "--config",
        "config_path",
        type=PathParam(dir_okay=False),
        metavar="PATH",
        help=_CONFIG_HELP,
        **extra,
    )


def _profile_name_option(**extra: Any) -> Callable[[F], F]:
    return click.option(
        "--profile",
        "profile_name",
        metavar="NAME",
        envvar="FTLOG_PROFILE",
        show_envvar=True,
        help=_PROFILE_HELP,
        **extra,
    )


def profile_options(func: F) -> F:
    """``--config`` and ``--profile``, read before the command's other options."""

    def apply(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        pending = ctx.meta.setdefault(_PENDING, {})
        pending[param.name] = value
        if len(pending) < 2 or ctx.resilient_parsing:
            return  # both eager options run before the others; the second loads the file
        from ftlog.config import load_config

        config = load_config(pending["config_path"])
        profile = config.profile(pending["profile_name"])
        ctx.meta[_CONFIG], ctx.meta[_PROFILE] = config, profile
        if profile is not None:
            # Values from the caller's own default_map (if any) keep precedence.
            ctx.default_map = {**profile.option_defaults(), **(ctx.default_map or {})}

    eager: dict[str, Any] = {"is_eager": True, "expose_value": False, "callback": apply}
    return _config_file_option(**eager)(_profile_name_option(**eager)(func))


def current_profile(ctx: click.Context | None = None) -> Profile | None:
    """The profile :func:`profile_options` selected for this invocation, or None."""
    ctx = ctx or click.get_current_context()
    profile: Profile | None = ctx.meta.get(_PROFILE)
    return profile


def current_prices(ctx: click.Context | None = None) -> PriceTable:
    """The prices :func:`profile_options` selected: the profile's own, looked up before the
    config file's top-level ``[prices]``; without a profile, the top-level table."""
    ctx = ctx or click.get_current_context()
    profile = current_profile(ctx)
    if profile is not None:
        return profile.prices
    config: Config = ctx.meta[_CONFIG]
    return config.prices


@click.group()
def config() -> None:
    """The config file: named profiles and a price table (TOML).

    \b
    Settings are taken, highest first, from: the command-line option, its environment
    variable (FTLOG_BASE_URL, FTLOG_DATABASE_URL, FTLOG_NOTIFY_WEBHOOK), the profile
    (--profile, $FTLOG_PROFILE or the file's default_profile), the built-in default.
    The token: --api-key, the variable named by the profile's api_key_env, its api_key,
    $FTLOG_API_KEY, $NEBIUS_API_KEY.
    """


@config.command()
@_config_file_option()
@_profile_name_option()
def show(config_path: Path | None, profile_name: str | None) -> None:
    """Print each setting, its value and where it comes from (secrets masked)."""
    import os

    from click.core import ParameterSource

    from ftlog.config import load_config, resolved_settings

    ctx = click.get_current_context()
    given: dict[str, str | None] = {}
    if ctx.get_parameter_source("config_path") is ParameterSource.COMMANDLINE:
        given["config"] = str(config_path)
    if ctx.get_parameter_source("profile_name") is ParameterSource.COMMANDLINE:
        given["profile"] = profile_name
    rows = resolved_settings(load_config(config_path), profile_name, os.environ, given)
    header = ("setting", "value", "source")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(2)]
    for row in [header, *rows]:
        click.echo(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip())


@config.command()
@_config_file_option()
def path(config_path: Path | None) -> None:
    """Print the config file's location, and (on stderr) whether it exists."""
    from ftlog.config import config_location

    location, source = config_location(config_path)
    click.echo(str(location))
    state = "exists" if location.is_file() else "does not exist"
    origin = "" if source == "default" else f", from {source}"
    click.echo(f"({state}{origin})", err=True)
