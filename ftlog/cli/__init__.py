"""The ``ftlog`` command line: a thin layer over the library.

Command modules import only click at module level; each command imports the library it
needs inside its body, so ``ftlog --help`` stays as fast as click itself.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ftlog import __version__


class FtlogGroup(click.Group):
    """Turns domain errors into a one-line message and their exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as err:
            failure = _failure_for(err)
            if failure is None:
                raise
            raise failure from None


class _Failure(click.ClickException):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class


def _failure_for(err: Exception) -> click.ClickException | None:
    """The one-line failure for a domain or database error; None for anything else (a bug)."""
    from ftlog.errors import FtlogError

    if isinstance(err, FtlogError):
        return _Failure(str(err), err.exit_code)
    if "sqlalchemy" in sys.modules:
        from sqlalchemy.exc import DBAPIError

        if isinstance(err, DBAPIError):
            detail = str(err.orig).strip().splitlines()[0] if str(err.orig).strip() else ""
            return _Failure(f"database error: {detail or type(err.orig).__name__}", 1)
    return None


@click.group(cls=FtlogGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ftlog")
def main() -> None:
    """Keep the history of fine-tuning jobs from an OpenAI-compatible API.

    \b
    Typical use, from cron every few minutes:
        ftlog snapshot
    then look at what was recorded:
        ftlog jobs; ftlog show JOB_ID; ftlog throughput; ftlog export snapshots -o s.csv
    """


def _register() -> None:
    from ftlog.cli import collect, config, cost, db, demo, plot, report, simulate

    main.add_command(collect.snapshot)
    main.add_command(collect.ingest)
    main.add_command(collect.watch)
    main.add_command(config.config)
    main.add_command(db.db)
    main.add_command(simulate.simulate)
    main.add_command(report.jobs)
    main.add_command(report.show)
    main.add_command(report.throughput)
    main.add_command(report.compare)
    main.add_command(report.export)
    main.add_command(plot.plot)
    main.add_command(cost.cost)
    main.add_command(demo.demo)


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
