"""``ftlog compare`` and ``ftlog trends``: many jobs at once.

Both select jobs as the other report commands do (:mod:`ftlog.cli.report`): JOB_IDs (or
unique prefixes) and the filters.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, cast

import click

from ftlog.cli.options import chosen_prices, db_option, prices_option
from ftlog.cli.report import (
    COST_TABLE_COLUMNS,
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

    from ftlog.analysis import Period

SIDE_BY_SIDE = 5
"""``ftlog compare`` shows up to this many jobs side by side, more as one row per job."""
COMPARE_TABLE_OUTCOMES = (
    "status", "trained_tokens", "running_s", "mean_tokens_per_s", "final_valid_loss",
    "best_valid_loss", *COST_TABLE_COLUMNS,
)  # fmt: skip
"""The outcomes ``ftlog compare`` shows for each job when it shows one row per job (those
that hold something)."""


@click.command()
@click.argument("job_ids", nargs=-1, metavar="[JOB_ID]...")
@click.option(
    "--by",
    metavar="HYPERPARAMETER",
    help="One row per value of this hyperparameter (learning_rate, batch_size, lora, ...): "
    "jobs, tokens/s (mean, min, max), final validation loss (mean, best) and cost.",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Show every hyperparameter, not only those that differ between the jobs.",
)
@filter_options
@prices_option
@format_option(*REPORT_FORMATS)
@db_option
def compare(
    job_ids: tuple[str, ...],
    by: str | None,
    show_all: bool,
    statuses: tuple[str, ...],
    model: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    prices_path: Path | None,
    fmt: str,
    db_url: str | None,
) -> None:
    """Hyperparameters and outcomes of jobs: the JOB_IDs (or unique prefixes), the jobs the
    filters select, or both; with neither, every job.

    By default only the hyperparameters that differ; --all shows every one. The outcomes
    (status, tokens, time queued and running, speed, final and best train and validation
    loss at the checkpoints, estimated cost) are always there. Up to 5 jobs are shown side
    by side, one column per job; more as one row per job, with the main outcomes (csv and
    json: always one row per job, every column). --by groups the jobs by a hyperparameter.
    """
    from ftlog import analysis

    if by is not None and show_all:
        raise click.UsageError("--all applies to the per-job comparison, not to --by")
    prices = chosen_prices(prices_path)
    filters = selection_filters(statuses, model, source, since, until, job_ids)
    with selecting_store(db_url, filters) as engine:
        if by is not None:
            frame = analysis.compare_by(engine, by, prices=prices, **filters)
        else:
            frame = analysis.compare_jobs(
                engine, only_different=not show_all, prices=prices, **filters
            )
    if fmt != "table" or by is not None:
        emit(frame, fmt)
    else:
        click.echo(_comparison_table(frame))


def _comparison_table(frame: pd.DataFrame) -> str:
    """A :func:`ftlog.analysis.compare_jobs` frame for a terminal: side by side (one column
    per job, every row) for a few jobs, else one row per job with the main outcomes."""
    from ftlog import export
    from ftlog.analysis import COMPARE_OUTCOMES

    if frame.empty:
        return "(no jobs)"
    ids = frame["job_id"]
    if len(frame) <= SIDE_BY_SIDE and ids.is_unique:
        turned = frame.drop(columns="source").set_index("job_id").T
        turned.index.name = "name"
        return export.format_comparison(turned)
    hyper = [c for c in frame.columns if c not in ("source", "job_id", *COMPARE_OUTCOMES)]
    shown = ["job_id", "source", "model", *hyper, *COMPARE_TABLE_OUTCOMES]
    constant = [c for c in ("source", "model") if frame[c].nunique(dropna=False) <= 1]
    empty = [c for c in COMPARE_TABLE_OUTCOMES if frame[c].isna().all()]
    if frame["estimated_cost"].isna().all():
        empty += list(COST_TABLE_COLUMNS)
    return export.format_table(frame[[c for c in shown if c not in (*constant, *empty)]])


@click.command()
@click.option(
    "--every",
    type=click.Choice(["day", "week"]),
    default="day",
    show_default=True,
    help="One row per UTC day, or per ISO week (from Monday), of the jobs' creation.",
)
@click.option(
    "--all-models",
    is_flag=True,
    help="One row per period for every model together, not one per model.",
)
@filter_options
@format_option(*REPORT_FORMATS)
@db_option
def trends(
    every: str,
    all_models: bool,
    statuses: tuple[str, ...],
    model: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    fmt: str,
    db_url: str | None,
) -> None:
    """How long jobs waited in queue and ran, per day (or week) of their creation and per
    model: the number of jobs, and the median and 90th percentile of queued_s and
    running_s (a job still queued or running counts with its time so far).
    """
    from ftlog import analysis

    filters = selection_filters(statuses, model, source, since, until)
    with selecting_store(db_url, filters) as engine:
        frame = analysis.trends(
            engine, every=cast("Period", every), by_model=not all_models, **filters
        )
    emit(frame, fmt)
