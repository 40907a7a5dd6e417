"""What a collector run shows while it works and when it ends.

* **Errors** (a job or request that failed): one line each on stderr, always, ``-q``
  included: cron mails them.
* **Warnings** (nothing lost, but worth knowing) and the **summary line**: on stderr unless
  ``-q``.
* **Status changes**: one line each with ``-v``.
* **Progress**: a line redrawn in place, on a terminal only and never with ``-q``, once a run
  has taken a second: per phase, what is done, of how many when known, and the time left.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

import click

if TYPE_CHECKING:
    from ftlog.collector import RunSummary

SHOW_AFTER_S = 1.0
"""Progress appears once the run has taken this long (a quick run shows none)."""
REDRAW_EVERY_S = 0.1


def print_run(summary: RunSummary, *, quiet: bool, verbose: bool) -> None:
    """The run's errors, warnings, status changes (``verbose``) and summary on stderr."""
    prefix = f"ftlog {summary.command}:"
    if verbose:
        for change in summary.result.status_changes:
            before = change.from_status or "new"
            model = f" ({change.model})" if change.model else ""
            click.echo(
                f"{prefix} {_plain(change.job_id)}{_plain(model)}: {before} → {change.to_status}",
                err=True,
            )
    if not quiet:
        for warning in summary.warnings:
            click.echo(f"{prefix} warning: {warning}", err=True)
    for error in summary.errors:
        click.echo(f"{prefix} error: {error}", err=True)
    if not quiet:
        click.echo(summary.line(), err=True)


def _plain(text: str) -> str:
    from ftlog.errors import shown_text

    return shown_text(text)


class TerminalProgress:
    """:class:`ftlog.fetching.Progress` drawn on a terminal (see the module docstring)."""

    def __init__(
        self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream or sys.stderr
        self._clock = clock
        self._began = clock()
        self._drawn_at = 0.0
        self._drawn = False
        self._phase = ""
        self._total: int | None = None
        self._done = 0
        self._phase_began = self._began

    @classmethod
    def for_terminal(cls, quiet: bool) -> TerminalProgress | None:
        """A progress display when stderr is a terminal and ``-q`` is off, else None."""
        return None if quiet or not sys.stderr.isatty() else cls()

    def start(self, phase: str, total: int | None) -> None:
        self._phase, self._total, self._done = phase, total, 0
        self._phase_began = self._clock()
        self._draw(force=True)

    def advance(self, done: int = 1) -> None:
        self._done += done
        self._draw()

    def close(self) -> None:
        """Clear the line, for what is printed next."""
        if self._drawn:
            self._stream.write("\r\033[K")
            self._stream.flush()
            self._drawn = False

    def text(self) -> str:
        """The progress line: ``events: 120/400 jobs, about 12 s left`` or
        ``listing jobs: 1,200 (350/s)``."""
        elapsed = max(self._clock() - self._phase_began, 1e-9)
        if self._total is None:
            return f"{self._phase}: {self._done:,} ({self._done / elapsed:,.0f}/s)"
        text = f"{self._phase}: {self._done:,}/{self._total:,}"
        if 0 < self._done < self._total:
            left = (self._total - self._done) * elapsed / self._done
            text += f", about {_duration(left)} left"
        return text

    def _draw(self, force: bool = False) -> None:
        now = self._clock()
        if now - self._began < SHOW_AFTER_S:
            return
        if not force and now - self._drawn_at < REDRAW_EVERY_S:
            return
        self._stream.write(f"\r\033[K  {self.text()}")
        self._stream.flush()
        self._drawn, self._drawn_at = True, now


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
