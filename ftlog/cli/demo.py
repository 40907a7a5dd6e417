"""``ftlog demo``: the tour ``make demo`` runs (simulated API, store, reports, plots)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ftlog.cli.options import PathParam, is_quiet, verbosity_options

if TYPE_CHECKING:
    from pathlib import Path


class _Live:
    """Progress on stderr: lines that stay, and on a terminal one status line redrawn in place."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.redraw = not quiet and sys.stderr.isatty()
        self._pending = False

    def line(self, text: str) -> None:
        if self.quiet:
            return
        self._clear()
        click.echo(text, err=True)

    def status(self, text: str) -> None:
        if self.redraw:
            self._clear()
            click.echo(click.style(text, dim=True), err=True, nl=False)
            self._pending = True

    def _clear(self) -> None:
        if self._pending:
            click.echo("\r\x1b[K", err=True, nl=False)
            self._pending = False


@click.command()
@click.option(
    "-o",
    "--output",
    type=PathParam(file_okay=False),
    default="ftlog-demo",
    show_default=True,
    help="Folder for the store, the CSV exports and the plots; created if needed. A folder "
    "holding anything but an earlier demo's files is refused; an earlier demo's files are "
    "replaced.",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=1, max=1000),
    help="Simulated seconds per real second. Default: 90 (about 20 s), 480 with --quick.",
)
@click.option("--quick", is_flag=True, help="A shorter run (about 4 s), for tests and CI.")
@verbosity_options
def demo(output: Path, speed: float | None, quick: bool) -> None:
    """Run ftlog end to end on a simulated API, in under a minute.

    Starts the built-in simulated fine-tuning API on a free loopback port with seven jobs
    (time accelerated, and ftlog observing on the simulated clock), snapshots them into a
    fresh SQLite store in OUTPUT while they train, then prints the throughput summary and
    the hyperparameter comparison, writes CSV exports and PNG plots into OUTPUT, and
    suggests commands to try next.

    Progress goes to stderr (-q: none); the report to stdout.
    """
    from ftlog.demo import next_steps, render_report, run_demo

    live = _Live(is_quiet(click.get_current_context()))
    result = run_demo(output, quick=quick, speed=speed, echo=live.line, status=live.status)
    live.line("")
    click.echo(render_report(result))
    click.echo()
    click.echo(next_steps(result))
    if result.errors:
        sys.exit(1)
