"""``ftlog cost``: estimated cost of the recorded jobs, from a price table."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, cast

import click

from ftlog.cli.config import current_prices, profile_options
from ftlog.cli.options import db_option, load_price_file, prices_option
from ftlog.cli.report import _filters, filter_options, format_option

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from ftlog.analysis import CostGroup


@click.command()
@click.option(
    "--by",
    type=click.Choice(["model", "source", "day"]),
    default="model",
    show_default=True,
    help="One row per base model, per source, or per day the jobs were created (UTC).",
)
@filter_options
@prices_option
@format_option("table", "csv", "json")
@db_option
@profile_options
def cost(
    by: str,
    statuses: tuple[str, ...],
    model: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    prices_path: Path | None,
    fmt: str,
    db_url: str | None,
) -> None:
    """Estimated cost of the jobs: their trained tokens priced by a price table.

    \b
    Prices: --prices FILE if given, else the profile's own prices, then the config
    file's [prices] (ftlog config show names them). One row per group and currency;
    a job whose model has no price is counted (unpriced_jobs), never costed, and
    amounts in different currencies are never added together. A profile also gives
    the defaults of --db and --source (its database_url and source).
    """
    from ftlog import analysis, export
    from ftlog.db import open_store

    given = load_price_file(prices_path)
    prices = current_prices() if given is None else given
    filters = _filters(statuses, model, source, since, until)
    group = cast("CostGroup", by)
    with open_store(db_url) as engine:
        totals = analysis.cost_totals(engine, by=group, prices=prices, **filters)
    if fmt == "csv":
        click.echo(export.to_csv(totals), nl=False)
    elif fmt == "json":
        click.echo(export.to_json_records(totals))
    elif totals.empty:
        click.echo("(no jobs)")
    else:
        click.echo(export.format_table(totals, max_width=50))
        click.echo(f"\n{_footer(analysis.currency_totals(totals), bool(prices))}")


def _footer(per_currency: pd.DataFrame, have_prices: bool) -> str:
    """``total: 1.40 USD, 0.60 EUR``, and how many jobs have no estimate."""
    from ftlog.export import format_money

    priced = per_currency.dropna(subset=["currency", "estimated_cost"])
    pairs = zip(priced["estimated_cost"], priced["currency"], strict=True)
    amounts = [f"{format_money(amount)} {currency}" for amount, currency in pairs]
    text = f"total: {', '.join(amounts) or 'no estimate'}"
    unpriced, jobs = int(per_currency["unpriced_jobs"].sum()), int(per_currency["jobs"].sum())
    if unpriced:
        why = "no price for the model or no trained tokens yet" if have_prices else "no prices"
        text += f" ({unpriced} of {jobs} jobs without an estimate: {why})"
    if not have_prices:
        text += "; add a [prices] table to the config file (ftlog config path) or use --prices"
    return text
