"""The collector: fetch job objects, parse them, save what changed. One call is one run.

:func:`snapshot` talks to the API; :func:`ingest` records objects saved earlier. Both count
what they did in a :class:`RunSummary` and leave one ``collector_runs`` row behind.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from ftlog import store
from ftlog.client import FineTuningClient, JobPage
from ftlog.details import Kind, collect_details
from ftlog.errors import APIError, AuthError, NotFound, PayloadError, UsageProblem
from ftlog.models import TERMINAL_STATUSES
from ftlog.notify import Target, deliver_pending
from ftlog.parse import JobRecord, parse_job
from ftlog.store import Observation, SaveResult

log = logging.getLogger(__name__)

PAGE_SIZE = 100
ANALYZE_AFTER_NEW_JOBS = 1000
"""A listing that recorded this many new jobs refreshes the planner's statistics."""


def default_source_name(base_url: str) -> str:
    """A source name from the API base URL: its host (and port), and path beyond ``/v1``."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    return parts.netloc + ("" if path in ("", "/v1") else path)


@dataclass(slots=True)
class RunSummary:
    """What one run did. ``errors`` holds one line per job or request that failed."""

    command: str
    result: SaveResult = field(default_factory=SaveResult)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    list_completed: bool = False
    fatal: bool = False
    details_added: dict[str, int] = field(default_factory=dict)
    notifications_sent: int = 0
    warnings: list[str] = field(default_factory=list)
    """Trouble that loses nothing (a notification to retry next run): no effect on exit code."""

    @property
    def outcome(self) -> str:
        if self.fatal:
            return "failed"
        return "partial" if self.errors else "ok"

    @property
    def exit_code(self) -> int:
        """0 when everything was recorded, 1 when some job or request failed."""
        return 1 if self.errors else 0

    def line(self) -> str:
        r = self.result
        text = (
            f"ftlog {self.command}: {r.seen} jobs seen, {r.changed} changed, "
            f"{len(r.transitions)} transitions, {len(self.errors)} errors, "
            f"{self.requests} requests in {self.seconds:.1f} s"
        )
        extras = [f"{n} new {kind}" for kind, n in self.details_added.items() if n]
        if self.notifications_sent or self.warnings:
            extras.append(f"{self.notifications_sent} notifications sent")
        if self.warnings:
            extras.append(f"{len(self.warnings)} warnings")
        if r.stale:
            extras.append(f"{r.stale} stale observations kept as raw payloads")
        return text + (f" ({', '.join(extras)})" if extras else "")

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "command": self.command,
            "outcome": self.outcome,
            "jobs_seen": r.seen,
            "new_jobs": r.new_jobs,
            "jobs_changed": r.changed,
            "snapshots_added": r.snapshots_added,
            "stale": r.stale,
            "transitions": [
                {
                    "job_id": t.job_id,
                    "from_status": t.from_status,
                    "to_status": t.to_status,
                    "observed_at": t.observed_at.isoformat(),
                }
                for t in r.transitions
            ],
            "errors": self.errors,
            "warnings": self.warnings,
            "new_details": self.details_added,
            "notifications_sent": self.notifications_sent,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class SnapshotPlan:
    """Which jobs a snapshot run asks about."""

    job_ids: Sequence[str] = ()
    """Just these jobs; otherwise a sync of the list (see :func:`snapshot`)."""
    active_only: bool = False
    """Re-fetch just the jobs recorded as not finished."""
    full: bool = False
    """Page through the whole list, not stopping at jobs already known."""
    details: Sequence[Kind] = ("events", "checkpoints")
    """Which details to fetch for jobs that changed."""
    notify: Sequence[Target] = ()
    """Where to tell about status transitions."""
    secret_env: Sequence[str] = ()
    """Variables that hold secrets, kept out of notify commands' environment."""


Progress = Callable[[int], None]
"""Called with the number of jobs just handled (drives a progress bar)."""
Clock = Callable[[], datetime]
"""When an observation is made: an aware UTC datetime."""


def snapshot(
    engine: Engine,
    client: FineTuningClient,
    source_id: int,
    plan: SnapshotPlan,
    *,
    command: str = "snapshot",
    progress: Progress | None = None,
    clock: Clock | None = None,
) -> RunSummary:
    """One collector run against the API.

    Without job ids: page through the job list, newest first, until a page holds a job that
    the store has as finished with the same object, and that an earlier complete listing
    already saw (so every older job is known); then re-fetch the jobs recorded as unfinished
    that those pages did not cover. An up-to-date store costs one list request.

    Observations are stamped with ``clock`` (default: the UTC wall clock); the demo passes
    its simulated API's clock, so that one clock describes the whole store.

    Raises AuthError (the token was refused) after recording the run as failed.
    """
    now = clock or _now
    summary = RunSummary(command)
    started = time.monotonic()
    run_id = store.start_run(engine, command, source_id)
    channels = [target.channel for target in plan.notify]
    try:
        covered: set[str] = set()
        if plan.job_ids:
            _fetch_each(engine, client, source_id, plan.job_ids, summary, progress, channels, now)
        else:
            if not plan.active_only:
                covered = _sync_list(
                    engine, client, source_id, plan.full, summary, progress, channels, now
                )
            unfinished = [
                j for j in store.unfinished_job_ids(engine, source_id) if j not in covered
            ]
            _fetch_each(engine, client, source_id, unfinished, summary, progress, channels, now)
        if plan.details:
            details = collect_details(engine, client, source_id, plan.details)
            summary.details_added = details.added
            summary.errors.extend(details.errors)
        if plan.notify:
            delivery = deliver_pending(engine, plan.notify, plan.secret_env)
            summary.notifications_sent = delivery.sent
            summary.warnings.extend(delivery.failed)
    except AuthError:
        summary.fatal = True
        raise
    except APIError as err:
        summary.fatal = True
        summary.errors.append(str(err))
    finally:
        summary.requests = client.request_count
        _finish_run(engine, run_id, summary, started)
    return summary


def _finish_run(engine: Engine, run_id: int, summary: RunSummary, started: float) -> None:
    summary.seconds = time.monotonic() - started
    store.finish_run(
        engine,
        run_id,
        summary.result,
        requests=summary.requests,
        errors=summary.errors,
        outcome=summary.outcome,
        list_completed=summary.list_completed,
    )


def _sync_list(
    engine: Engine,
    client: FineTuningClient,
    source_id: int,
    full: bool,
    summary: RunSummary,
    progress: Progress | None,
    channels: Sequence[str],
    now: Clock,
) -> set[str]:
    """Page through the job list; returns the ids it recorded."""
    listed_before = store.last_completed_listing(engine, source_id)
    covered: set[str] = set()
    unanalyzed = 0  # new jobs since the planner's statistics were last refreshed
    # A listing expected to go to the end fetches the next page while it saves this one.
    expect_all = full or listed_before is None
    pages = (_prefetched if expect_all else _timed)(client.iter_job_pages(limit=PAGE_SIZE), now)
    for page, observed_at in pages:
        records = _parse_items(page.jobs, summary)
        # Only a listing that may stop early needs the stored state (read before saving).
        ids = [r.job_id for r in records]
        known = {} if expect_all else store.stored_jobs(engine, source_id, ids)
        new_before = summary.result.new_jobs
        _save(engine, source_id, [Observation(r, observed_at) for r in records], summary, channels)
        unanalyzed += summary.result.new_jobs - new_before
        if unanalyzed >= ANALYZE_AFTER_NEW_JOBS:
            store.refresh_statistics(engine)
            unanalyzed = 0
        covered.update(r.job_id for r in records)
        if progress:
            progress(len(page.jobs))
        if (
            not full
            and listed_before is not None
            and any(_is_settled(r, known.get(r.job_id), listed_before) for r in records)
        ):
            log.debug("reached jobs known finished and unchanged; the rest is up to date")
            break
    summary.list_completed = True
    return covered


def _is_settled(record: JobRecord, stored: store.StoredJob | None, listed_before: datetime) -> bool:
    """Finished, unchanged, and known when a listing last completed: every older job is
    known too (that listing reached it, or stopped at a newer job for which this held)."""
    return (
        stored is not None
        and stored.status in TERMINAL_STATUSES
        and stored.sha256 == record.sha256
        and stored.first_seen_at <= listed_before
    )


def _prefetched(pages: Iterator[JobPage], now: Clock) -> Iterator[tuple[JobPage, datetime]]:
    """Pages with their fetch time, the next one fetched while the caller saves this one."""
    from concurrent.futures import ThreadPoolExecutor

    def fetch() -> tuple[JobPage, datetime] | None:
        page = next(pages, None)
        return None if page is None else (page, now())

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftlog-prefetch") as pool:
        pending = pool.submit(fetch)
        while (item := pending.result()) is not None:
            if item[0].has_more:
                pending = pool.submit(fetch)
            yield item
            if not item[0].has_more:
                return


def _timed(pages: Iterator[JobPage], now: Clock) -> Iterator[tuple[JobPage, datetime]]:
    for page in pages:
        yield page, now()


def _fetch_each(
    engine: Engine,
    client: FineTuningClient,
    source_id: int,
    job_ids: Iterable[str],
    summary: RunSummary,
    progress: Progress | None,
    channels: Sequence[str],
    now: Clock,
) -> None:
    for job_id in job_ids:
        try:
            obj = client.get_job(job_id)
            observed_at = now()
            record = parse_job(obj)
        except (NotFound, PayloadError) as err:
            _report(summary, str(err))
            continue
        if record.job_id != job_id:
            _report(summary, f"job {job_id}: the API answered with job {record.job_id}")
            continue
        _save(engine, source_id, [Observation(record, observed_at)], summary, channels)
        if progress:
            progress(1)


def _parse_items(items: Iterable[Any], summary: RunSummary) -> list[JobRecord]:
    records = []
    for item in items:
        try:
            records.append(parse_job(item))
        except PayloadError as err:
            _report(summary, str(err))
    return records


def _save(
    engine: Engine,
    source_id: int,
    observations: Sequence[Observation],
    summary: RunSummary,
    channels: Sequence[str] = (),
) -> None:
    try:
        summary.result.add(store.save_observations(engine, source_id, observations, channels))
    except IntegrityError as err:
        # Only two different objects of one job stamped with the same time can get here.
        ids = ", ".join(sorted({o.record.job_id for o in observations}))
        _report(summary, f"jobs {ids}: conflicting objects for one observation time ({err.orig})")


def _report(summary: RunSummary, message: str) -> None:
    log.error("%s", message)
    summary.errors.append(message)


def _now() -> datetime:
    return datetime.now(UTC)


# --- ingest -------------------------------------------------------------------------------


def read_job_objects(text: str, name: str) -> list[Any]:
    """Job objects from saved JSON: one object, a list response, an array, or JSON lines.

    Raises UsageProblem naming the file when it is none of these.
    """
    stripped = text.strip()
    if not stripped:
        return []
    try:
        document = json.loads(stripped)
    except json.JSONDecodeError:
        return _json_lines(stripped, name)
    if isinstance(document, list):
        return document
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        return list(document["data"])
    return [document]


def _json_lines(text: str, name: str) -> list[Any]:
    objects = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            objects.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise UsageProblem(
                f"{name}: line {number} is not JSON ({err.msg}); give a job object, a list "
                "response, a JSON array or JSON lines"
            ) from None
    return objects


def ingest(
    engine: Engine,
    source_id: int,
    objects: Iterable[Any],
    observed_at: datetime | None = None,
) -> RunSummary:
    """Record job objects saved earlier, all as seen at ``observed_at`` (default: now).

    Where one job appears several times, its last object is the one recorded for that time.
    """
    summary = RunSummary("ingest")
    started = time.monotonic()
    at = observed_at or _now()
    run_id = store.start_run(engine, "ingest", source_id)
    try:
        latest: dict[str, JobRecord] = {}
        for record in _parse_items(objects, summary):
            latest[record.job_id] = record
        _save(engine, source_id, [Observation(r, at) for r in latest.values()], summary)
    finally:
        _finish_run(engine, run_id, summary, started)
    return summary


# --- watch --------------------------------------------------------------------------------


def watch(
    engine: Engine,
    client: FineTuningClient,
    source_id: int,
    plan: SnapshotPlan,
    interval: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Clock | None = None,
) -> Iterator[RunSummary]:
    """Snapshot every ``interval`` seconds until the watched jobs are all finished.

    Watches ``plan.job_ids``, or (when empty) every job: each pass is then an incremental
    sync (new jobs are seen too), and watching ends when none is left unfinished. Yields
    each pass's summary.
    """
    job_ids = plan.job_ids
    while True:
        started = time.monotonic()
        yield snapshot(engine, client, source_id, plan, command="watch", clock=clock)
        if not _any_unfinished(engine, source_id, job_ids):
            return
        sleep(max(0.0, interval - (time.monotonic() - started)))


def _any_unfinished(engine: Engine, source_id: int, job_ids: Sequence[str]) -> bool:
    unfinished = set(store.unfinished_job_ids(engine, source_id))
    return bool(unfinished & set(job_ids)) if job_ids else bool(unfinished)
