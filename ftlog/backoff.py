"""Waiting between attempts: the retry policy, ``Retry-After`` and rate-limit headers read,
and one pause that every thread of a client honours."""

from __future__ import annotations

import email.utils
import math
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a request again, and for how long.

    Retried: HTTP 429, 500, 502, 503, 504, and transport failures (connection refused or
    reset, timeouts, a peer that breaks the protocol). Attempt ``n`` (from 1) is followed by a
    wait drawn uniformly from ``[0, min(max_delay, base_delay * 2**(n-1))]`` ("full jitter"),
    unless the response has a ``Retry-After`` header (seconds or an HTTP date), which is used
    as it is, capped at ``max_retry_after``. The defaults give up after 6 attempts, or sooner
    when the next wait would take the time since the first attempt past ``max_total_wait``
    (so a cron run never hangs for long behind a struggling API).
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 60.0
    max_total_wait: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.max_retry_after, self.max_total_wait) < 0:
            raise ValueError("delays must not be negative")

    def backoff(self, attempt: int) -> float:
        """The jittered wait after failed attempt number ``attempt`` (from 1)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not cryptography


def retry_after(response: httpx.Response | None, cap: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), capped."""
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)


class Pause:
    """A pause every thread of a client honours before each request: set when the API asks
    to slow down (429, ``Retry-After``, a rate-limit window used up), so that concurrent
    requests wait together instead of each hitting the limit again (no thundering herd)."""

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self._clock, self._sleep = clock, sleep
        self._until = 0.0
        self._lock = threading.Lock()

    def hold(self, seconds: float) -> None:
        """Pause every request for ``seconds`` from now (a longer pause already set stays)."""
        with self._lock:
            self._until = max(self._until, self._clock() + seconds)

    def wait(self) -> None:
        while True:
            with self._lock:
                remaining = self._until - self._clock()
            if remaining <= 0:
                return
            self._sleep(remaining)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def duration(text: str) -> float | None:
    """Seconds from a rate-limit reset header: ``20ms``, ``1.5s``, ``6m0s``, ``1h2m3s``, or a
    plain number of seconds; None when it is none of these."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)
