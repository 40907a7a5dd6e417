"""Options shared by several commands, and the one settings resolution behind them.

Every command that touches the store has :data:`db_option`, which brings ``--config`` and
``--profile`` with it: an eager callback loads the config file, resolves every setting once
(:func:`ftlog.config.resolve_settings`: command line > environment > profile > built-in
default) and hands the result to click as ``ctx.default_map``, so each option's value is the
resolved one; ``ftlog config show`` prints the same resolution. The command reads the rest
(the profile, its prices) from :func:`current_settings`.

Nothing here imports more than click at module level (``ftlog --help`` is benchmarked
against ``import click``); the library is imported when an option is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ftlog import settings

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from ftlog.config import Profile, Settings
    from ftlog.pricing import PriceTable

F = TypeVar("F", bound=Callable[..., Any])

_PENDING = "ftlog.settings.pending"
_SETTINGS = "ftlog.settings"


class PathParam(click.Path):
    """``click.Path`` that gives a ``pathlib.Path``, importing pathlib only when an option is
    used (``ftlog --help`` is benchmarked against ``import click``)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from pathlib import Path

        return Path(os.fsdecode(super().convert(value, param, ctx)))


class TimeParam(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.3 on
    """A time of :mod:`ftlog.times`' grammar, as an aware UTC datetime."""

    name = "time"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        from datetime import datetime

        from ftlog.times import TimeError, to_utc

        if isinstance(value, datetime):
            return to_utc(value)
        try:
            return to_utc(str(value))
        except TimeError as err:
            self.fail(str(err), param, ctx)


TIME = TimeParam()
TIME_EXAMPLES = "2026-01-31, 2026-01-31T12:00Z, 2026-01-31T14:00+02:00 (no offset: UTC)"
"""The grammar's ISO forms for help texts (spans are added where they make sense)."""

_CONFIG_HELP = (
    f"Config file. Default: ${settings.CONFIG}, else config.toml in the user config directory "
    "(see: ftlog config path)."
)
_PROFILE_HELP = (
    f"Profile of the config file to use. Default: ${settings.PROFILE}, else the file's "
    "default_profile."
)


def config_file_option(**extra: Any) -> Callable[[F], F]:
    return click.option(
        "--config",
        "config_path",
        type=PathParam(dir_okay=False),
        metavar="PATH",
        help=_CONFIG_HELP,
        **extra,
    )


def profile_name_option(**extra: Any) -> Callable[[F], F]:
    return click.option(
        "--profile",
        "profile_name",
        metavar="NAME",
        envvar=settings.PROFILE,
        help=_PROFILE_HELP,
        **extra,
    )


def profile_options(func: F) -> F:
    """``--config`` and ``--profile``, read before the command's other options, which then
    default to the resolved settings."""

    def apply(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        pending = ctx.meta.setdefault(_PENDING, {})
        pending[param.name] = value
        if len(pending) < 2 or ctx.resilient_parsing:
            return  # both eager options run before the others; the second loads the file
        resolved = resolve(ctx, pending["config_path"], pending["profile_name"])
        ctx.meta[_SETTINGS] = resolved
        # Values from the caller's own default_map (if any) keep precedence.
        ctx.default_map = {**resolved.option_defaults(), **(ctx.default_map or {})}
        webhook = resolved.values["notify_webhook"]
        if webhook.problem and any(p.name == "notify_webhook" for p in ctx.command.params):
            import logging

            logging.getLogger("ftlog.config").warning(
                "%s; no webhook notifications", webhook.problem
            )

    eager: dict[str, Any] = {"is_eager": True, "expose_value": False, "callback": apply}
    return config_file_option(**eager)(profile_name_option(**eager)(func))


def resolve(ctx: click.Context, config_path: Path | None, profile_name: str | None) -> Settings:
    """The settings for ``--config`` and ``--profile`` (as given, or from their variables):
    what the command uses, and what ``ftlog config show`` prints."""
    from click.core import ParameterSource

    from ftlog.config import load_config, resolve_settings

    given = {
        key: str(value)
        for key, name, value in (
            ("config", "config_path", config_path),
            ("profile", "profile_name", profile_name),
        )
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }
    return resolve_settings(load_config(config_path), profile_name, os.environ, given)


def current_settings(ctx: click.Context | None = None) -> Settings:
    """The settings :func:`profile_options` resolved for this invocation."""
    ctx = ctx or click.get_current_context()
    found: Settings | None = ctx.meta.get(_SETTINGS)
    if found is None:
        raise RuntimeError(f"{ctx.command_path} has no profile options")
    return found


def current_profile(ctx: click.Context | None = None) -> Profile | None:
    """The profile in use, or None."""
    return current_settings(ctx).profile


def db_option(func: F) -> F:
    """``--db``, and the ``--config``/``--profile`` that give its default: every command
    that touches the store has it, so every one resolves its settings alike."""
    func = click.option(
        "--db",
        "db_url",
        metavar="URL",
        help="The store: a database URL (sqlite:///file.db, postgresql://user@host/db) or a "
        f"path to a SQLite file. Default: ${settings.DATABASE_URL}, else the profile's "
        "database_url, else ftlog.db in the user data directory (ftlog config show).",
    )(func)
    return profile_options(func)


def verbosity_options(func: F) -> F:
    """-v for debug logs, -q for errors only; configures logging before the command runs."""

    def configure(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        import logging

        store = ctx.ensure_object(dict)
        store[param.name] = value
        verbose, quiet = store.get("verbose", 0), store.get("quiet", False)
        level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
        if not verbose or verbose < 2:
            # httpx/httpcore debug logs are noise at -v; -vv shows them (they never hold the token).
            logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
            logging.getLogger("httpcore").setLevel(max(level, logging.WARNING))
        return value

    func = click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        callback=configure,
        help="Print errors only.",
    )(func)
    return click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        callback=configure,
        help="Debug logs (-vv adds HTTP transport logs).",
    )(func)


def is_quiet(ctx: click.Context) -> bool:
    return bool(ctx.ensure_object(dict).get("quiet"))


def is_verbose(ctx: click.Context) -> bool:
    return bool(ctx.ensure_object(dict).get("verbose"))


prices_option = click.option(
    "--prices",
    "prices_path",
    type=PathParam(dir_okay=False),
    metavar="FILE",
    help="A TOML file with a [prices] table to estimate costs with, instead of the profile's "
    "and the config file's prices.",
)


def chosen_prices(path: Path | None) -> PriceTable:
    """The table of ``--prices FILE``; without it, the profile's prices, then the config
    file's (empty when there are none: no estimates)."""
    if path is None:
        return current_settings().prices
    from ftlog.config import load_prices

    return load_prices(path)
