"""``ftlog cost``: estimated cost of the recorded jobs, from a price table."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, cast

import click

from ftlog.cli.options import chosen_prices, db_option, prices_option
from ftlog.cli.report import (
    REPORT_FORMATS,
    emit,
    filter_options,
    format_option,
    selecting_store,
    selection_filters,
)

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
@format_option(*REPORT_FORMATS)
@db_option
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
    the defaults of --db and --source (its database_url and source), as for every
    command.
    """
    from ftlog import analysis, export

    prices = chosen_prices(prices_path)
    filters = selection_filters(statuses, model, source, since, until)
    group = cast("CostGroup", by)
    with selecting_store(db_url, filters) as engine:
        totals = analysis.cost_totals(engine, by=group, prices=prices, **filters)
    if fmt != "table" or totals.empty:
        emit(totals, fmt)
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
