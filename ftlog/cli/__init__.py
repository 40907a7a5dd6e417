"""The ``ftlog`` command line: a thin layer over the library.

Command modules import only click at module level; each command imports the library it
needs inside its body, so ``ftlog --help`` stays as fast as click itself. A command's module
is imported only when the command is looked up (click's lazy-loading pattern), so
``ftlog snapshot`` and ``ftlog snapshot --help`` build one module's commands, not all.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from ftlog import __version__

COMMANDS = {
    "snapshot": "collect:snapshot",
    "ingest": "collect:ingest",
    "watch": "collect:watch",
    "simulate": "simulate:simulate",
    "jobs": "report:jobs",
    "show": "report:show",
    "throughput": "report:throughput",
    "compare": "compare:compare",
    "trends": "compare:trends",
    "export": "report:export",
    "plot": "plot:plot",
    "cost": "cost:cost",
    "config": "config:config",
    "db": "db:db",
    "demo": "demo:demo",
}
"""Each command's module in ``ftlog.cli`` and its name there."""


class FtlogGroup(click.Group):
    """Loads commands on demand, and turns domain errors into a one-line message and their
    exit code, never a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        module = importlib.import_module(f"ftlog.cli.{module_name}")
        command: click.Command = getattr(module, attribute)
        return command

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
