"""The one time grammar of ftlog: every ``--since``, ``--until``, ``--observed-at`` and every
``since``/``until`` of :mod:`ftlog.analysis` reads times through :func:`parse_time`.

Accepted, case-insensitively:

* an ISO 8601 date or date and time: ``2026-01-31``, ``2026-01-31T12:00``,
  ``2026-01-31 12:00:05.250``; with an offset (``+02:00``, ``-0530``) or ``Z`` it is that
  moment, without one it is **UTC** (never the machine's local time, which cron jobs and
  servers do not share);
* a span back from now: a number and a unit, ``s``, ``m``, ``h``, ``d`` or ``w``
  (``90s``, ``30m``, ``12h``, ``7d``, ``2w``, ``1.5h``);
* ``now``.

Whatever the input, the result is an aware datetime in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

EXAMPLES = "2026-01-31, 2026-01-31T12:00Z, 2026-01-31T14:00+02:00, or a span back: 30m 12h 7d 2w"
"""The grammar in one line, for help texts and error messages."""

_SPAN = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhdw])", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class TimeError(ValueError):
    """Text that is not a time of the grammar; the message says what is accepted."""


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """``text`` as an aware UTC datetime; spans count back from ``now`` (default: the
    current time). Raises :class:`TimeError` for anything else."""
    value = text.strip()
    span = _SPAN.fullmatch(value)
    if span is not None or value.lower() == "now":
        moment = datetime.now(UTC) if now is None else as_utc(now)
        if span is None:
            return moment
        amount = float(span[1])
        try:
            return moment - timedelta(**{_UNITS[span[2].lower()]: amount})
        except OverflowError:
            raise TimeError(f"{text!r} reaches back before year 1") from None
    if value[-1:] in ("z", "Z"):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise TimeError(f"{text!r} is not a time: use an ISO date or time ({EXAMPLES})") from None
    return as_utc(moment)


def as_utc(moment: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is taken as UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def to_utc(value: datetime | str) -> datetime:
    """A datetime (naive means UTC) or text of the grammar, as an aware UTC datetime."""
    return parse_time(value) if isinstance(value, str) else as_utc(value)
