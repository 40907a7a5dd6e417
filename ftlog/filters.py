"""The values the job filters take: model and source patterns, and hints for values that
select nothing.

``model`` and ``source`` take a name or an ``fnmatch`` pattern, matched case-sensitively as
the price table matches models (:mod:`ftlog.pricing`): ``Qwen/*``, ``*Llama-3.1*``,
``nebius-*``. A pattern is expanded against the names the store holds, so SQLite and Postgres
select the same jobs.

The read commands check a filter against what was recorded (:func:`filter_hints`): a status
neither documented nor recorded is a typo (``--status runing``: did you mean running?), and a
model or source no job has gets a hint with the closest recorded names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from sqlalchemy import Connection, select

from ftlog.models import Job, Source, table
from ftlog.parse import KNOWN_STATUSES
from ftlog.pricing import is_pattern

_LISTED = 5
"""A hint lists the recorded names when there are at most this many."""
_jobs = table(Job)
_sources = table(Source)


def selected_names(
    value: str, conn: Connection, recorded: Callable[[Connection], list[str]]
) -> list[str]:
    """The names ``value`` selects: itself, or the ``recorded`` names its pattern matches
    (asked of the store only for a pattern)."""
    if not is_pattern(value):
        return [value]
    return [name for name in recorded(conn) if fnmatchcase(name, value)]


def recorded_models(conn: Connection) -> list[str]:
    return sorted(
        conn.execute(select(_jobs.c.model).distinct().where(_jobs.c.model.is_not(None)))
        .scalars()
        .all()
    )


def recorded_sources(conn: Connection) -> list[str]:
    return sorted(conn.execute(select(_sources.c.name)).scalars().all())


def recorded_statuses(conn: Connection) -> list[str]:
    return sorted(conn.execute(select(_jobs.c.status).distinct()).scalars().all())


@dataclass(frozen=True)
class FilterHint:
    """A filter value that selects no recorded job; ``typo`` means it cannot be right."""

    message: str
    typo: bool = False


def filter_hints(
    conn: Connection,
    *,
    statuses: Sequence[str] = (),
    model: str | None = None,
    source: str | None = None,
) -> list[FilterHint]:
    """What is wrong with the filters, for the commands to tell: a status that is neither
    documented nor recorded (a typo), a model or source no recorded job matches."""
    hints: list[FilterHint] = []
    if statuses:
        known = sorted(KNOWN_STATUSES | set(recorded_statuses(conn)))
        for status in statuses:
            if status not in known:
                hints.append(
                    FilterHint(f"unknown status {status!r}{_did_you_mean(status, known)}", True)
                )
    for what, value, names in (
        ("model", model, recorded_models),
        ("source", source, recorded_sources),
    ):
        if value is None:
            continue
        recorded = names(conn)
        if not set(selected_names(value, conn, names)) & set(recorded):
            hints.append(
                FilterHint(f"no recorded job has {what} {value!r}{_closest(value, recorded)}")
            )
    return hints


def _did_you_mean(value: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]}?)"
    return f" (statuses: {', '.join(known)})"


def _closest(value: str, recorded: Sequence[str]) -> str:
    """`` (did you mean X?)`` from the recorded names: those containing ``value`` (any case),
    else the most similar, else the names themselves when they are few."""
    if not recorded:
        return " (none is recorded yet)"
    needle = value.strip("*").lower()
    close = [name for name in recorded if needle and needle in name.lower()][:3]
    if not close:
        lowered = {name.lower(): name for name in recorded}
        close = [lowered[c] for c in difflib.get_close_matches(value.lower(), list(lowered), n=3)]
    if close:
        return f" (did you mean {' or '.join(close)}?)"
    if len(recorded) <= _LISTED:
        return f" (recorded: {', '.join(recorded)})"
    return ""
