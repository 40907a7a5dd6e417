"""Telling people about status changes: a command per change, or a webhook POST.

Each recorded status change (not a job's first sighting) is queued, in the same transaction
that records it, once per channel (``notifications`` table). Delivery then claims a queued
row for a while (a lease) before sending it, so overlapping runs do not both send it; a
failed delivery is left queued and retried by the next run with the same channel. A sender
killed between sending and marking the row delivered sends it again when the lease ends:
delivery is at least once, and exactly once in every other case. The rows themselves are
the store's (:mod:`ftlog.store.notifications`); this module sends.

Neither the API token nor the webhook URL is ever put in a notification, a log line or the
database (a channel is stored as a hash of its target).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal

import httpx
from sqlalchemy import Engine

from ftlog import settings, store
from ftlog.errors import shown_text
from ftlog.store import StatusChange

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 30.0
WEBHOOK_TIMEOUT_S = 10.0
DELIVERY_BUDGET_S = 60.0
"""The time all deliveries of one run may take together; what is left is sent next run, so
a cron run never hangs behind a slow command or webhook."""


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


def message(change: StatusChange) -> str:
    """What a notification says, in one line."""
    model = f" ({change.model})" if change.model else ""
    error = f": {change.error_message}" if change.error_message else ""
    return shown_text(
        f"ftlog: fine-tuning job {change.job_id}{model} on {change.source} went "
        f"{change.from_status} → {change.to_status}{error}"
    )


@dataclass(slots=True)
class DeliveryResult:
    sent: int = 0
    failed: list[str] = field(default_factory=list)


def deliver_pending(
    engine: Engine,
    targets: Sequence[Target],
    secret_env: Sequence[str] = (),
    *,
    budget_s: float = DELIVERY_BUDGET_S,
    clock: Callable[[], float] = time.monotonic,
) -> DeliveryResult:
    """Deliver every queued notification of these targets' channels (this run's and
    earlier failures), within ``budget_s`` seconds in all. ``secret_env`` names extra
    variables kept out of a command's environment (the token's variables are always
    removed). A notification not sent in time is left queued for the next run."""
    result = DeliveryResult()
    deadline = clock() + budget_s
    for target in targets:
        claimed = store.claim_notifications(engine, target.channel)
        for index, (row_id, change) in enumerate(claimed):
            left = deadline - clock()
            if left <= 0:
                unsent = [row for row, _ in claimed[index:]]
                store.release_notifications(engine, unsent)
                result.failed.append(
                    f"{len(unsent)} notifications to {target} left for the next run (this "
                    f"run's {budget_s:g} s for notifications ran out)"
                )
                break
            error = _send(target, change, secret_env, left)
            store.finish_notification(engine, row_id, error)
            if error is None:
                result.sent += 1
            else:
                text = f"{target} failed for job {change.job_id}: {error}; retried next run"
                log.debug("%s", text)
                result.failed.append(shown_text(text))
    return result


def _send(
    target: Target, change: StatusChange, secret_env: Sequence[str], left: float
) -> str | None:
    """Deliver one notification; the error as one line, or None when it went out."""
    try:
        if target.kind == "command":
            return _run_command(target.value, change, secret_env, min(COMMAND_TIMEOUT_S, left))
        return _post_webhook(target.value, change, min(WEBHOOK_TIMEOUT_S, left))
    except (OSError, subprocess.SubprocessError, httpx.HTTPError) as err:
        return f"{type(err).__name__}: {_scrub(str(err), target)}"


def _run_command(
    command: str, change: StatusChange, secret_env: Sequence[str], timeout: float
) -> str | None:
    """Run the command in a process group of its own; past ``timeout`` the whole group is
    killed, so that nothing it started outlives it."""
    hidden = set(settings.API_KEY_VARIABLES) | set(secret_env)
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env.update(
        {
            "FTLOG_SOURCE": change.source or "",
            "FTLOG_JOB_ID": change.job_id,
            "FTLOG_OLD_STATUS": change.from_status or "",
            "FTLOG_NEW_STATUS": change.to_status,
            "FTLOG_OBSERVED_AT": change.observed_at.isoformat(),
            "FTLOG_MODEL": change.model or "",
            "FTLOG_ERROR_MESSAGE": change.error_message or "",
            "FTLOG_MESSAGE": message(change),
        }
    )
    with subprocess.Popen(  # noqa: S602 - the user's own command line, run as they wrote it
        command,
        shell=True,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            return f"timed out after {timeout:.0f} s (killed with what it started)"
    if process.returncode != 0:
        detail = (stderr or stdout).strip().splitlines()
        return f"exit code {process.returncode}" + (f": {detail[-1][:200]}" if detail else "")
    return None


def _kill_group(process: subprocess.Popen[str]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    # Children that kept the pipes open are dead too: this returns at once.
    process.communicate()


def _post_webhook(url: str, change: StatusChange, timeout: float) -> str | None:
    body = {
        "text": message(change),
        "source": change.source,
        "job_id": change.job_id,
        "from_status": change.from_status,
        "to_status": change.to_status,
        "observed_at": change.observed_at.isoformat(),
        "model": change.model,
        "error_message": change.error_message,
    }
    with _quiet_httpx():  # its INFO line would print the URL, which is a secret
        response = httpx.post(url, json=body, timeout=timeout, follow_redirects=False)
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
