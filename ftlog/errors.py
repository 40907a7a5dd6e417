"""Domain errors. The CLI turns each into a one-line message and its exit code."""

from __future__ import annotations

import re

_UNPRINTABLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
"""Control characters, line and paragraph separators (a second line in a log), bidi controls
(text shown reversed), lone surrogates."""
_SHOWN_CHARS = 80


def shown_text(text: str) -> str:
    """Text from an API with control characters, separators, bidi controls and lone
    surrogates escaped, so that a hostile value cannot move a terminal's cursor, break a log
    line or show itself reversed."""
    return _UNPRINTABLE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def shown(text: str) -> str:
    """A value from an API (a job id, say) as it may appear in a one-line message: as
    :func:`shown_text`, and cut at 80 characters."""
    escaped = shown_text(text)
    if len(escaped) > _SHOWN_CHARS:
        escaped = f"{escaped[: _SHOWN_CHARS - 1]}…"
    return escaped


class FtlogError(Exception):
    """A problem the user can act on; ``str(err)`` is the one-line message."""

    exit_code = 1


class UsageProblem(FtlogError):
    """Bad input from the user: a wrong option, file or value."""

    exit_code = 2


class SchemaError(FtlogError):
    """The database schema is not the one this ftlog expects."""

    exit_code = 2


class StoreError(FtlogError):
    """The store cannot be used as configured: missing, read-only, unreachable, not a
    database. The message names it (password masked) and the fix."""

    exit_code = 2


class AuthError(FtlogError):
    """The API refused the token (401/403). Never carries the token itself."""

    exit_code = 2


class APIError(FtlogError):
    """The API failed after retries, or answered something unusable."""


class NotFound(APIError):
    """The API answered 404 for a job or endpoint."""


class PayloadError(FtlogError):
    """A job object that cannot be recorded: not JSON, a required field missing, a wrong type."""

    def __init__(self, job_id: str | None, problem: str) -> None:
        self.job_id = job_id
        self.problem = problem
        super().__init__(f"job {shown(job_id) if job_id else '(no id)'}: {problem}")


class Busy(FtlogError):
    """Another collector holds the store (cron overlap); the run was skipped."""

    exit_code = 75


class Interrupted(KeyboardInterrupt):
    """A signal (SIGTERM, say: systemd stop, ``timeout``, ``docker stop``) asked the run to
    stop. A KeyboardInterrupt, so that it unwinds like Ctrl-C: transactions roll back, the
    run is recorded as interrupted, and the exit code is 128 + the signal's number."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number
