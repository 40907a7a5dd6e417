"""``ftlog plot``: charts of the history as image files (needs the ``plot`` extra)."""

from __future__ import annotations

import click

from ftlog.cli.options import db_option

output_option = click.option(
    "-o",
    "--output",
    required=True,
    metavar="FILE",
    help="The image to write; its suffix picks the format (.png, .svg, .pdf).",
)
source_option = click.option(
    "--source", metavar="NAME", help="The jobs' source, when several hold the same JOB_ID."
)


@click.group()
def plot() -> None:
    """Draw charts of recorded jobs into image files (pip install 'ftlog[plot]')."""


@plot.command()
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...")
@output_option
@click.option(
    "--elapsed",
    is_flag=True,
    help="Time axis in hours since each job was first seen running, so jobs line up.",
)
@source_option
@db_option
def throughput(
    job_ids: tuple[str, ...], output: str, elapsed: bool, source: str | None, db_url: str | None
) -> None:
    """Trained tokens over time and tokens/s per interval, one line per job.

    The legend names each job with its main hyperparameters (lr=1e-5 bs=8 lora).
    """
    from ftlog.db import open_store
    from ftlog.plots import plot_throughput

    with open_store(db_url) as engine:
        path = plot_throughput(job_ids, output, engine, source=source, elapsed=elapsed)
    click.echo(f"wrote {path}", err=True)


@plot.command()
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...")
@output_option
@source_option
@db_option
def compare(job_ids: tuple[str, ...], output: str, source: str | None, db_url: str | None) -> None:
    """Bars of mean tokens/s and time running per job, labeled by the hyperparameters
    that differ between them."""
    from ftlog.db import open_store
    from ftlog.plots import plot_compare

    with open_store(db_url) as engine:
        path = plot_compare(job_ids, output, engine, source=source)
    click.echo(f"wrote {path}", err=True)


@plot.command()
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...")
@output_option
@click.option(
    "--x",
    "x_axis",
    type=click.Choice(["both", "step", "tokens"]),
    default="both",
    show_default=True,
    help="Draw the loss against step, against trained tokens (estimated as step times the "
    "job's tokens per step), or both side by side.",
)
@source_option
@db_option
def loss(
    job_ids: tuple[str, ...], output: str, x_axis: str, source: str | None, db_url: str | None
) -> None:
    """Train (solid) and validation (dashed) loss of the jobs in one figure, one colour per
    job, from their checkpoints and metrics events.

    The legend names each job with its main hyperparameters (lr=1e-5 bs=8 lora).
    """
    from typing import cast

    from ftlog.db import open_store
    from ftlog.plots import LossAxis, plot_loss

    with open_store(db_url) as engine:
        path = plot_loss(job_ids, output, engine, source=source, x=cast("LossAxis", x_axis))
    click.echo(f"wrote {path}", err=True)
