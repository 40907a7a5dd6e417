"""``ftlog plot``: charts of the history as image files (needs the ``plot`` extra).

Each command selects jobs as the report commands do (JOB_IDs, the filters, or both), loads
their frames through :mod:`ftlog.analysis` and hands them to :mod:`ftlog.plots`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from ftlog.cli.options import db_option
from ftlog.cli.report import filter_options, selecting_store, selection_filters

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy import Engine

F = TypeVar("F", bound=Callable[..., Any])


def _selection_options(func: F) -> F:
    """``JOB_ID...``, ``-o FILE`` and the filters: what every chart takes."""
    func = filter_options(func)
    func = click.option(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="The image to write; its suffix picks the format (.png, .svg, .pdf).",
    )(func)
    return click.argument("job_ids", nargs=-1, metavar="[JOB_ID]...")(func)


@click.group()
def plot() -> None:
    """Draw charts of recorded jobs into image files (pip install 'ftlog[plot]').

    Each chart takes JOB_IDs, or the filters (--status, --model, --source, --since,
    --until), or both; it tells up to 40 jobs apart.
    """


@plot.command()
@_selection_options
@click.option(
    "--elapsed",
    is_flag=True,
    help="Time axis in time since each job was first seen running, so jobs line up.",
)
@db_option
def throughput(output: str, elapsed: bool, db_url: str | None, **selection: Any) -> None:
    """Trained tokens over time and tokens/s per interval, one line per job.

    The legend names each job with its base model (when they differ) and main
    hyperparameters (lr=1e-5 bs=8 lora); failed and cancelled jobs end with a marker.
    """
    from ftlog import analysis
    from ftlog.plots import plot_throughput

    with _selected(db_url, **selection) as (engine, jobs, filters):
        path = plot_throughput(
            analysis.throughput(engine, **filters),
            analysis.load_snapshots(engine, **filters),
            jobs,
            output,
            hyperparameters=analysis.load_hyperparameters(engine, **filters),
            elapsed=elapsed,
        )
    click.echo(f"wrote {path}", err=True)


@plot.command()
@_selection_options
@db_option
def compare(output: str, db_url: str | None, **selection: Any) -> None:
    """Bars of mean tokens/s and time running per job, labelled by the base model (when
    they differ) and the hyperparameters that differ; failed and cancelled jobs hatched."""
    from ftlog import analysis
    from ftlog.plots import plot_compare

    with _selected(db_url, **selection) as (engine, jobs, filters):
        summary = analysis.throughput_summary(engine, **filters)
        path = plot_compare(
            _in_order(summary, jobs),
            output,
            hyperparameters=analysis.load_hyperparameters(engine, **filters),
        )
    click.echo(f"wrote {path}", err=True)


@plot.command()
@_selection_options
@click.option(
    "--x",
    "x_axis",
    type=click.Choice(["both", "step", "tokens"]),
    default="both",
    show_default=True,
    help="Draw the loss against step, against trained tokens (estimated as step times the "
    "job's tokens per step), or both side by side.",
)
@db_option
def loss(output: str, x_axis: str, db_url: str | None, **selection: Any) -> None:
    """Train (solid) and validation (dashed) loss of the jobs in one figure, from their
    checkpoints and metrics events; each job has its colour and marker.

    The legend names each job with its base model (when they differ) and main
    hyperparameters (lr=1e-5 bs=8 lora).
    """
    from ftlog import analysis
    from ftlog.plots import LossAxis, plot_loss

    with _selected(db_url, **selection) as (engine, jobs, filters):
        path = plot_loss(
            analysis.loss_curves(engine, **filters),
            jobs,
            output,
            hyperparameters=analysis.load_hyperparameters(engine, **filters),
            x=cast("LossAxis", x_axis),
        )
    click.echo(f"wrote {path}", err=True)


@contextmanager
def _selected(
    db_url: str | None,
    job_ids: Sequence[str],
    statuses: Sequence[str],
    model: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Iterator[tuple[Engine, pd.DataFrame, dict[str, Any]]]:
    """The store, the selected jobs (in the order of JOB_IDs when given, else by creation)
    and the filters that select them; UsageProblem for an unknown or ambiguous JOB_ID, for
    no job at all, and for more jobs than a chart tells apart."""
    from ftlog import analysis
    from ftlog.analysis.selection import exact_filters
    from ftlog.errors import UsageProblem
    from ftlog.plots import MAX_JOBS

    asked = selection_filters(statuses, model, source, since, until, job_ids)
    with selecting_store(db_url, asked) as engine:
        jobs = analysis.select_jobs(engine, **asked)  # in the order of JOB_IDs when given
        filters = dict(exact_filters(jobs, cast("Any", asked)))
        if jobs.empty:
            raise UsageProblem("no recorded job matches the filters; see: ftlog jobs")
        if len(jobs) > MAX_JOBS:
            raise UsageProblem(
                f"{len(jobs)} jobs match, and a chart tells at most {MAX_JOBS} apart; name "
                "JOB_IDs or narrow with --status, --model, --source, --since or --until"
            )
        yield engine, jobs, filters


def _in_order(frame: pd.DataFrame, jobs: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s rows (one per job) in the order of ``jobs``."""
    return jobs[["source", "job_id"]].merge(frame, on=["source", "job_id"], how="inner")
