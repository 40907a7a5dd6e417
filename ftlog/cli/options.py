"""Options shared by several commands."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from pathlib import Path

    from ftlog.pricing import PriceTable

F = TypeVar("F", bound=Callable[..., Any])


class PathParam(click.Path):
    """``click.Path`` that gives a ``pathlib.Path``, importing pathlib only when an option is
    used (``ftlog --help`` is benchmarked against ``import click``)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from pathlib import Path

        return Path(os.fsdecode(super().convert(value, param, ctx)))


db_option = click.option(
    "--db",
    "db_url",
    metavar="URL",
    envvar="FTLOG_DATABASE_URL",
    show_envvar=True,
    help="Database URL (sqlite:///file.db, postgresql+psycopg://…) or a plain path to a SQLite "
    "file. Default: ftlog.db under the user data directory.",
)


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
    help="A TOML file with a [prices] table to estimate costs with, instead of the config "
    "file's prices.",
)


def load_price_file(path: Path | None) -> PriceTable | None:
    """The table of ``--prices FILE``; None without the option (the library's default)."""
    if path is None:
        return None
    from ftlog.pricing import load_prices

    return load_prices(path)
