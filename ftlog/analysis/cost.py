"""Estimated costs: trained tokens priced by a :class:`~ftlog.pricing.PriceTable`.

**Which prices.** Every function takes ``prices``: a :class:`~ftlog.pricing.PriceTable`, or
None for no prices (every estimate NA). The library reads no config file: the ``ftlog``
commands pass the table of ``--prices``, else of the profile in use
(:func:`ftlog.config.resolve_settings`); a notebook loads one with
:func:`ftlog.config.load_prices` or takes a profile's from :func:`ftlog.config.load_config`.

**Never a made-up number.** A job's ``estimated_cost`` is ``trained_tokens / 1e6 ×
per_million_tokens`` in the price's ``currency``, and NA (with currency NA) when no key of
the table matches its model (matching: :mod:`ftlog.pricing`), or NA (with the price's
currency) when the job reports no trained tokens yet. A job's tokens count whatever its
status: a running job's cost is that of the tokens trained so far; a failed job's that of
the tokens it trained before it failed.
"""

from __future__ import annotations

from typing import Any, Literal, Unpack

import pandas as pd
from pandas.api.typing import SeriesGroupBy

from ftlog.analysis._read import Filters, Kind, StoreLike, columns, public, reading
from ftlog.pricing import PriceTable, estimate_costs

CostGroup = Literal["model", "source", "day"]
COST_GROUPS: tuple[CostGroup, ...] = ("model", "source", "day")
COST_TOTAL_COLUMNS = columns(
    "currency jobs:int priced_jobs:int unpriced_jobs:int trained_tokens:int estimated_cost:float"
)
"""The columns of :func:`cost_totals` after the group's own (``model``, ``source`` or ``day``)."""


def int_sum(values: SeriesGroupBy[Any, Any]) -> pd.Series:
    """Each group's sum of integers (NA if none), and NA where it would not fit int64:
    pandas' own integer sum wraps around silently (int64's maximum plus 1 is negative)."""
    exact = values.sum(min_count=1)
    approx = values.apply(lambda group: group.astype("float64").sum())
    return exact.where(approx.abs() < 2.0**63)


def job_costs(jobs: pd.DataFrame, prices: PriceTable | None) -> pd.DataFrame:
    """``estimated_cost`` (Float64) and ``currency`` (string) of each row of ``jobs`` (with
    ``model`` and ``trained_tokens``), on its index."""
    table = PriceTable() if prices is None else prices
    return estimate_costs(jobs["model"], jobs["trained_tokens"], table)


def cost_totals(
    store: StoreLike = None,
    *,
    by: CostGroup = "model",
    prices: PriceTable | None = None,
    **filters: Unpack[Filters],
) -> pd.DataFrame:
    """The estimated cost of the selected jobs, one row per group and currency.

    Groups, by ``by``: ``model`` (the base model), ``source``, or ``day``: the UTC date the
    job was *created* (``YYYY-MM-DD`` text), the same time the ``since``/``until`` filters
    select on, so a day's row holds every job of that day the filters let through.

    Columns: the group's, then ``COST_TOTAL_COLUMNS``. A group's jobs are split by the
    currency of their price; jobs with no price form the group's row with ``currency`` NA.
    ``jobs`` counts the row's jobs: ``priced_jobs`` those with an estimate,
    ``unpriced_jobs`` the others (no price, or no trained tokens reported yet).
    ``trained_tokens`` sums the tokens of all the row's jobs that report them (NA if none
    does); ``estimated_cost`` sums the estimates of the priced ones only, NA when there are
    none: a job without a price is counted, never costed, and two currencies are never
    added together. Rows are ordered by group, then currency (NA last).
    """
    if by not in COST_GROUPS:
        raise ValueError(f"by must be one of {', '.join(COST_GROUPS)}, not {by!r}")
    with reading(store, filters) as (_, _, jobs):
        costs = job_costs(jobs, prices)
    key = jobs["created_at"].dt.strftime("%Y-%m-%d") if by == "day" else jobs[by]
    rows = pd.DataFrame(
        {
            by: key.astype("string"),
            "currency": costs["currency"],
            "trained_tokens": jobs["trained_tokens"],
            "estimated_cost": costs["estimated_cost"],
            "priced": costs["estimated_cost"].notna().astype("int64"),
        }
    )
    groups = rows.groupby([by, "currency"], dropna=False, sort=True)
    totals = pd.DataFrame(
        {
            "jobs": groups.size(),
            "priced_jobs": groups["priced"].sum(),
            "trained_tokens": int_sum(groups["trained_tokens"]),
            "estimated_cost": groups["estimated_cost"].sum(min_count=1),
        }
    ).reset_index()
    totals["unpriced_jobs"] = totals["jobs"] - totals["priced_jobs"]
    kinds: dict[str, Kind] = {by: "str", **COST_TOTAL_COLUMNS}
    return public(totals, kinds)


def currency_totals(totals: pd.DataFrame) -> pd.DataFrame:
    """A :func:`cost_totals` frame summed over its groups: one row per currency (NA last),
    with ``COST_TOTAL_COLUMNS``."""
    groups = totals.groupby("currency", dropna=False, sort=True)
    summed = pd.DataFrame(
        {
            name: int_sum(groups[name])
            for name in ("jobs", "priced_jobs", "unpriced_jobs", "trained_tokens")
        }
    )
    summed["estimated_cost"] = groups["estimated_cost"].sum(min_count=1)
    return public(summed.reset_index(), COST_TOTAL_COLUMNS)
