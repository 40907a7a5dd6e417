"""Telling people about status transitions: a command per transition, or a webhook POST.

Each recorded status change (not a job's first sighting) is queued, in the same transaction
that records it, once per channel (``notifications`` table). Delivery then claims a queued
row for a while (a lease) before sending it, so overlapping runs do not both send it; a
failed delivery is left queued and retried by the next run with the same channel. A sender
killed between sending and marking the row delivered sends it again when the lease ends:
delivery is at least once, and exactly once in every other case.

Neither the API token nor the webhook URL is ever put in a notification, a log line or the
database (a channel is stored as a hash of its target).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from sqlalchemy import Engine, or_, select

from ftlog import settings
from ftlog.db import write_transaction
from ftlog.models import Job, Notification, Source, StatusChange, table

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
COMMAND_TIMEOUT_S = 30.0
WEBHOOK_TIMEOUT_S = 10.0
MAX_ATTEMPTS = 20
"""After this many failed deliveries a notification is given up (it stays in the table)."""

_notifications = table(Notification)


@dataclass(frozen=True, slots=True)
class Target:
    """Where notifications go. ``value`` is a shell command or a webhook URL (a secret)."""

    kind: Literal["command", "webhook"]
    value: str = field(repr=False)

    @property
    def channel(self) -> str:
        digest = hashlib.sha256(f"{self.kind}\0{self.value}".encode()).hexdigest()[:24]
        return f"{self.kind}:{digest}"

    def __str__(self) -> str:
        return "the notify command" if self.kind == "command" else "the notify webhook"


@dataclass(frozen=True, slots=True)
class Change:
    """What a notification says."""

    source: str
    job_id: str
    from_status: str
    to_status: str
    observed_at: datetime
    model: str | None
    error_message: str | None

    def text(self) -> str:
        model = f" ({self.model})" if self.model else ""
        error = f": {self.error_message}" if self.error_message else ""
        return (
            f"ftlog: fine-tuning job {self.job_id}{model} on {self.source} went "
            f"{self.from_status} → {self.to_status}{error}"
        )


@dataclass(slots=True)
class DeliveryResult:
    sent: int = 0
    failed: list[str] = field(default_factory=list)


def deliver_pending(
    engine: Engine, targets: Sequence[Target], secret_env: Sequence[str] = ()
) -> DeliveryResult:
    """Deliver every queued notification of these targets' channels (this run's and
    earlier failures). ``secret_env`` names extra variables kept out of a command's
    environment (the token's variables are always removed)."""
    result = DeliveryResult()
    for target in targets:
        for row_id, change in _claim(engine, target.channel):
            error = _send(target, change, secret_env)
            _finish(engine, row_id, error)
            if error is None:
                result.sent += 1
            else:
                message = f"{target} failed for job {change.job_id}: {error}; retried next run"
                log.warning("%s", message)
                result.failed.append(message)
    return result


def _claim(engine: Engine, channel: str) -> list[tuple[int, Change]]:
    """Take the lease on this channel's queued notifications that nobody else holds."""
    now = datetime.now(UTC)
    n = _notifications.c
    with write_transaction(engine) as conn:
        query = (
            select(
                n.id,
                Source.name,
                Job.job_id,
                StatusChange.from_status,
                StatusChange.to_status,
                StatusChange.observed_at,
                Job.model,
                Job.error_message,
            )
            .join(StatusChange, StatusChange.id == n.status_change_id)
            .join(Job, Job.id == StatusChange.job_pk)
            .join(Source, Source.id == Job.source_id)
            .where(
                n.channel == channel,
                n.delivered_at.is_(None),
                n.attempts < MAX_ATTEMPTS,
                or_(n.claimed_until.is_(None), n.claimed_until < now),
            )
            .order_by(StatusChange.observed_at, n.id)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=_notifications, skip_locked=True)
        rows = conn.execute(query).all()
        if rows:
            conn.execute(
                _notifications.update()
                .where(n.id.in_([row.id for row in rows]))
                .values(claimed_until=now + LEASE)
            )
    return [(row.id, Change(*row[1:])) for row in rows]


def _finish(engine: Engine, row_id: int, error: str | None) -> None:
    n = _notifications.c
    values: dict[str, Any] = {"attempts": n.attempts + 1, "claimed_until": None}
    if error is None:
        values["delivered_at"] = datetime.now(UTC)
        values["last_error"] = None
    else:
        values["last_error"] = error[:1000]
    with write_transaction(engine) as conn:
        conn.execute(_notifications.update().where(n.id == row_id).values(values))


def _send(target: Target, change: Change, secret_env: Sequence[str]) -> str | None:
    """Deliver one notification; the error as one line, or None when it went out."""
    try:
        if target.kind == "command":
            return _run_command(target.value, change, secret_env)
        return _post_webhook(target.value, change)
    except (OSError, subprocess.SubprocessError, httpx.HTTPError) as err:
        return f"{type(err).__name__}: {_scrub(str(err), target)}"


def _run_command(command: str, change: Change, secret_env: Sequence[str]) -> str | None:
    hidden = set(settings.API_KEY_VARIABLES) | set(secret_env)
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env.update(
        {
            "FTLOG_SOURCE": change.source,
            "FTLOG_JOB_ID": change.job_id,
            "FTLOG_OLD_STATUS": change.from_status,
            "FTLOG_NEW_STATUS": change.to_status,
            "FTLOG_OBSERVED_AT": change.observed_at.isoformat(),
            "FTLOG_MODEL": change.model or "",
            "FTLOG_ERROR_MESSAGE": change.error_message or "",
            "FTLOG_MESSAGE": change.text(),
        }
    )
    done = subprocess.run(  # noqa: S602 - the user's own command line, run as they wrote it
        command,
        shell=True,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        return f"exit code {done.returncode}" + (f": {detail[-1][:200]}" if detail else "")
    return None


def _post_webhook(url: str, change: Change) -> str | None:
    body = {
        "text": change.text(),
        "source": change.source,
        "job_id": change.job_id,
        "from_status": change.from_status,
        "to_status": change.to_status,
        "observed_at": change.observed_at.isoformat(),
        "model": change.model,
        "error_message": change.error_message,
    }
    with _quiet_httpx():  # its INFO line would print the URL, which is a secret
        response = httpx.post(url, json=body, timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False)
    if response.is_success:
        return None
    return f"HTTP {response.status_code}"


@contextmanager
def _quiet_httpx() -> Iterator[None]:
    httpx_log = logging.getLogger("httpx")
    level = httpx_log.level
    httpx_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        httpx_log.setLevel(level)


def _scrub(text: str, target: Target) -> str:
    """Error text without the webhook URL, which httpx errors may quote."""
    return text.replace(target.value, "<webhook>") if target.kind == "webhook" else text
