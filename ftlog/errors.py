"""Domain errors. The CLI turns each into a one-line message and its exit code."""

from __future__ import annotations


class FtlogError(Exception):
    """A problem the user can act on; ``str(err)`` is the one-line message."""

    exit_code = 1


class UsageProblem(FtlogError):
    """Bad input from the user: a wrong option, file or value."""

    exit_code = 2


class SchemaError(FtlogError):
    """The database schema is not the one this ftlog expects."""

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
        super().__init__(f"job {job_id or '(no id)'}: {problem}")


class Busy(FtlogError):
    """Another collector holds the store (cron overlap); the run was skipped."""

    exit_code = 75
