"""The collector: fetch job objects, parse them, save what changed. One call is one run.

:func:`snapshot` talks to the API; :func:`ingest` records objects saved earlier. Both count
what they did in a :class:`RunSummary` and leave one ``collector_runs`` row behind, whatever
happens: ``ok``, ``partial`` (some job or request failed; the rest is recorded), ``failed``
(the run could not go on) or ``interrupted`` (a signal stopped it; the batch in flight was
finished or rolled back).

**The unit of failure is one job.** A job the API cannot give, a job object that cannot be
parsed and a job the database refuses are each reported in one line naming the job, and cost
no other job. Only a refused token, or an API failing past its retries while listing, ends a
run early.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from ftlog import store
from ftlog.client import FineTuningClient, job_id_problem
from ftlog.db import first_line
from ftlog.details import collect_details
from ftlog.errors import APIError, AuthError, NotFound, PayloadError, UsageProblem, shown
from ftlog.fetching import Breaker, Progress, fetch_all
from ftlog.notify import Target, deliver_pending
from ftlog.paging import Pager
from ftlog.parse import JobRecord, load_json, parse_job
from ftlog.redact import scrub
from ftlog.schema import TERMINAL_STATUSES
from ftlog.settings import DEFAULT_CONCURRENCY
from ftlog.store import DetailKind, Observation, RunCounts, SaveResult

log = logging.getLogger(__name__)

PAGE_SIZE = 100
SAVE_BATCH = 100
"""Jobs refreshed one by one are saved this many per transaction."""
ANALYZE_AFTER_NEW_JOBS = 1000
"""A listing that recorded this many new jobs refreshes the planner's statistics, and again
each time the number it recorded doubled (the statistics matter most while the store is
small, and cost more as it grows)."""

Clock = Callable[[], datetime]
"""When an observation is made: an aware UTC datetime."""


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
    warnings: list[str] = field(default_factory=list)
    """Trouble that loses nothing (a value kept in the raw payload only, a notification to
    retry next run): no effect on the exit code."""
    requests: int = 0
    seconds: float = 0.0
    list_completed: bool = False
    fatal: bool = False
    interrupted_by: int | None = None
    """The signal that stopped the run, if one did."""
    details_added: dict[str, int] = field(default_factory=dict)
    notifications_sent: int = 0

    @property
    def outcome(self) -> store.Outcome:
        if self.interrupted_by is not None:
            return "interrupted"
        if self.fatal:
            return "failed"
        return "partial" if self.errors else "ok"

    @property
    def exit_code(self) -> int:
        """0 when everything was recorded, 1 when some job or request failed, 128 + the
        signal's number when a signal stopped the run (130 for SIGINT, 143 for SIGTERM)."""
        if self.interrupted_by is not None:
            return 128 + self.interrupted_by
        return 1 if self.errors else 0

    def line(self) -> str:
        r = self.result
        text = (
            f"ftlog {self.command}: {r.seen} jobs seen, {r.changed} changed, "
            f"{len(r.status_changes)} status changes, {len(self.errors)} errors, "
            f"{self.requests} requests in {self.seconds:.1f} s"
        )
        extras = [f"{n} new {kind}" for kind, n in self.details_added.items() if n]
        if self.notifications_sent:
            extras.append(f"{self.notifications_sent} notifications sent")
        if self.warnings:
            extras.append(f"{len(self.warnings)} warnings")
        if r.stale:
            extras.append(f"{r.stale} stale observations kept as raw payloads")
        if self.interrupted_by is not None:
            extras.append(f"interrupted by {signal.Signals(self.interrupted_by).name}")
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
            "conflicts": r.conflicts,
            "status_changes": [
                {
                    "job_id": c.job_id,
                    "from_status": c.from_status,
                    "to_status": c.to_status,
                    "observed_at": c.observed_at.isoformat(),
                }
                for c in r.status_changes
            ],
            "errors": self.errors,
            "warnings": self.warnings,
            "list_completed": self.list_completed,
            "new_details": self.details_added,
            "notifications_sent": self.notifications_sent,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
        }

    def counts(self) -> RunCounts:
        r = self.result
        return RunCounts(
            outcome=self.outcome,
            requests=self.requests,
            jobs_seen=r.seen,
            jobs_changed=r.changed,
            snapshots_added=r.snapshots_added,
            status_changes=len(r.status_changes),
            errors=self.errors,
            list_completed=self.list_completed,
        )


@dataclass(frozen=True, slots=True)
class SnapshotPlan:
    """Which jobs a snapshot run asks about, and how."""

    job_ids: Sequence[str] = ()
    """Just these jobs; otherwise a sync of the list (see :func:`snapshot`)."""
    active_only: bool = False
    """Re-fetch just the jobs recorded as not finished."""
    full: bool = False
    """Page through the whole list, not stopping at jobs already known."""
    details: Sequence[DetailKind] = ("events", "checkpoints")
    """Which details to fetch for jobs that changed."""
    notify: Sequence[Target] = ()
    """Where to tell about status changes."""
    secret_env: Sequence[str] = ()
    """Variables that hold secrets, kept out of notify commands' environment."""
    concurrency: int = DEFAULT_CONCURRENCY
    """Per-job requests (refreshes, events, checkpoints) in flight at once."""


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
    that those pages did not cover. An up-to-date store costs one list request. Then the new
    events and checkpoints of the jobs that changed, and the notifications.

    Observations are stamped with ``clock`` (default: the UTC wall clock); the demo passes
    its simulated API's clock, so that one clock describes the whole store.

    Raises AuthError (the token was refused) after recording the run as failed, and
    KeyboardInterrupt (SIGINT, or SIGTERM turned into one by the CLI) after recording it
    as interrupted.
    """
    run = _Run(engine, client, source_id, plan, progress, clock or _now, RunSummary(command))
    started = time.monotonic()
    run_id = store.start_run(engine, command, source_id)
    try:
        run.collect()
    except AuthError:
        run.summary.fatal = True
        raise
    except APIError as err:
        run.summary.fatal = True
        _report(run.summary, str(err))
    except KeyboardInterrupt as err:
        _interrupted(run.summary, engine, err)
        raise
    except Exception as err:
        # A database error, say: the caller reports it; the run's row must not say 'ok'.
        run.summary.fatal = True
        _report(run.summary, first_line(err))
        raise
    finally:
        run.summary.requests = client.request_count
        _finish_run(engine, run_id, run.summary, started)
    return run.summary


def _interrupted(summary: RunSummary, engine: Engine, err: KeyboardInterrupt) -> None:
    """Note the signal; the connection it cut short may be mid-statement, so the pool is
    renewed before the run's end is written."""
    summary.interrupted_by = getattr(err, "signal_number", signal.SIGINT)
    engine.dispose()


@dataclass(slots=True)
class _Run:
    engine: Engine
    client: FineTuningClient
    source_id: int
    plan: SnapshotPlan
    progress: Progress | None
    now: Clock
    summary: RunSummary

    def collect(self) -> None:
        plan = self.plan
        if plan.job_ids:
            self.refresh(plan.job_ids, explicit=True)
        else:
            covered = set() if plan.active_only else self.sync_list()
            unfinished = store.unfinished_job_ids(self.engine, self.source_id)
            self.refresh([j for j in unfinished if j not in covered], explicit=False)
        if plan.details:
            details = collect_details(
                self.engine,
                self.client,
                self.source_id,
                plan.details,
                concurrency=plan.concurrency,
                progress=self.progress,
            )
            self.summary.details_added = details.added
            self.summary.warnings.extend(details.warnings)
            for error in details.errors:
                _report(self.summary, error)
        if plan.notify:
            delivery = deliver_pending(self.engine, plan.notify, plan.secret_env)
            self.summary.notifications_sent = delivery.sent
            self.summary.warnings.extend(delivery.failed)

    def sync_list(self) -> set[str]:
        """Page through the job list; returns the ids it recorded."""
        listed_before = store.last_complete_listing(self.engine, self.source_id)
        covered: set[str] = set()
        analyze_at = ANALYZE_AFTER_NEW_JOBS
        # A listing expected to go to the end fetches the next page while it saves this one.
        expect_all = self.plan.full or listed_before is None
        pager = self.client.job_pages(PAGE_SIZE)
        if self.progress is not None:
            self.progress.start("listing jobs", None)
        errors_before = len(self.summary.errors)
        pages = _prefetched(pager, self.now) if expect_all else _listed(pager, self.now)
        for listed in pages:
            records = listed.records
            for error in listed.errors:
                _report(self.summary, error)
            # Only a listing that may stop early needs the stored state (read before saving).
            ids = [r.job_id for r in records]
            known = {} if expect_all else store.stored_jobs(self.engine, self.source_id, ids)
            self.save([Observation(r, listed.observed_at) for r in records])
            if self.summary.result.new_jobs >= analyze_at:
                store.refresh_statistics(self.engine)
                analyze_at *= 2
            covered.update(ids)
            if self.progress is not None:
                self.progress.advance(listed.items)
            if (
                not self.plan.full
                and listed_before is not None
                and any(_is_settled(r, known.get(r.job_id), listed_before) for r in records)
            ):
                log.debug("reached jobs known finished and unchanged; the rest is up to date")
                self.summary.list_completed = True
                return covered
        # A job that could not be parsed or saved was not recorded: a listing that lost one
        # is not complete, so the next run pages to it again instead of stopping at an older
        # finished job.
        lost_jobs = len(self.summary.errors) > errors_before
        self.summary.list_completed = pager.complete and not lost_jobs
        if pager.problem:
            _report(
                self.summary,
                f"job list: {pager.problem}; recorded what it sent, and the next run pages further",
            )
        return covered

    def refresh(self, job_ids: Sequence[str], *, explicit: bool) -> None:
        """Fetch these jobs one by one, several at a time, and save them in batches."""
        wanted = []
        for job_id in dict.fromkeys(job_ids):
            problem = job_id_problem(job_id)
            if problem:
                _report(self.summary, f"job {shown(job_id)}: {problem}; not requested")
            else:
                wanted.append(job_id)
        if self.progress is not None and wanted:
            self.progress.start("refreshing jobs", len(wanted))
        breaker = Breaker()
        batch: list[Observation] = []
        fetched = fetch_all(wanted, self.fetch_job, self.plan.concurrency, breaker.tripped)
        for job_id, outcome in fetched:
            breaker.record(outcome)
            if self.progress is not None:
                self.progress.advance()
            if isinstance(outcome, NotFound) and not explicit:
                self.summary.warnings.append(
                    f"job {shown(job_id)}: the API no longer has it (HTTP 404); its last "
                    "recorded status stands"
                )
            elif isinstance(outcome, APIError | PayloadError):
                _report(self.summary, str(outcome))
            elif outcome.record.job_id != job_id:
                answered = shown(outcome.record.job_id)
                _report(self.summary, f"job {shown(job_id)}: the API answered with job {answered}")
            else:
                batch.append(outcome)
                if len(batch) >= SAVE_BATCH:
                    self.save(batch)
                    batch = []
        self.save(batch)
        if breaker.tripped():
            _report(
                self.summary,
                f"stopped refreshing jobs after {breaker.limit} requests in a row failed: the "
                "API seems to be failing; the next run tries again",
            )

    def fetch_job(self, job_id: str) -> Observation:
        obj = self.client.get_job(job_id)
        try:
            return Observation(parse_job(obj), self.now())
        except PayloadError as err:
            if err.job_id is None:  # an answer with no usable id: name the job asked for
                problem = f"the API's answer is no job object: {err.problem}"
                raise PayloadError(job_id, problem) from None
            raise

    def save(self, observations: Sequence[Observation]) -> None:
        channels = [target.channel for target in self.plan.notify]
        _save(self.engine, self.source_id, observations, self.summary, channels)


def _finish_run(engine: Engine, run_id: int, summary: RunSummary, started: float) -> None:
    summary.seconds = time.monotonic() - started
    try:
        store.finish_run(engine, run_id, summary.counts())
    except DBAPIError:
        if summary.interrupted_by is None and not summary.fatal:
            raise
        # The run stopped (a signal, or an error being raised): its row stays 'running',
        # which says as much, and the error that stopped it is the one to report.
        log.warning("could not record the end of the run", exc_info=True)


def _is_settled(record: JobRecord, stored: store.StoredJob | None, listed_before: datetime) -> bool:
    """Finished, unchanged, and known when a listing last completed: every older job is
    known too (that listing reached it, or stopped at a newer job for which this held)."""
    return (
        stored is not None
        and stored.status in TERMINAL_STATUSES
        and stored.sha256 == record.sha256
        and stored.first_seen_at <= listed_before
    )


@dataclass(frozen=True, slots=True)
class _Listed:
    """A page of the job list, parsed: its records, the items that could not be, and when
    it was fetched."""

    records: list[JobRecord]
    errors: list[str]
    observed_at: datetime
    items: int


def _listed(pages: Pager, now: Clock) -> Iterator[_Listed]:
    for page in pages:
        observed_at = now()
        yield _Listed(*_parse_items(page.jobs), observed_at, len(page.jobs))


def _prefetched(pages: Pager, now: Clock) -> Iterator[_Listed]:
    """As :func:`_listed`, the next page fetched and parsed in a thread of its own while the
    caller saves this one (the database's own work, in C, runs meanwhile)."""
    from concurrent.futures import ThreadPoolExecutor

    fetched = _listed(pages, now)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftlog-prefetch") as pool:
        pending = pool.submit(next, fetched, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, fetched, None)
            yield item


def _parse_items(items: Iterable[Any]) -> tuple[list[JobRecord], list[str]]:
    """The job objects that parse, and one error line for each that does not."""
    records, errors = [], []
    for item in items:
        try:
            records.append(parse_job(item))
        except PayloadError as err:
            errors.append(str(err))
    return records, errors


def _save(
    engine: Engine,
    source_id: int,
    observations: Sequence[Observation],
    summary: RunSummary,
    channels: Sequence[str] = (),
) -> None:
    result = store.save_observations(engine, source_id, observations, channels)
    summary.result.add(result)
    summary.warnings.extend(result.problems)
    for failure in result.failures:
        _report(summary, str(failure))


def _report(summary: RunSummary, message: str) -> None:
    log.debug("error: %s", message)
    summary.errors.append(message)


def _now() -> datetime:
    return datetime.now(UTC)


# --- ingest -------------------------------------------------------------------------------


def read_job_objects(data: bytes | str, name: str) -> list[Any]:
    """Job objects from saved JSON (UTF-8, with or without a BOM): one object, a list
    response, an array, or JSON lines.

    Raises UsageProblem naming the file when it is none of these.
    """
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data.removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise UsageProblem(
            f"{name}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
        ) from None
    stripped = text.strip()
    if not stripped:
        return []
    try:
        document = load_json(stripped)
    except json.JSONDecodeError:
        return _json_lines(stripped, name)
    except ValueError as err:
        raise UsageProblem(f"{name}: {err}") from None
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
            objects.append(load_json(line))
        except json.JSONDecodeError as err:
            raise UsageProblem(
                f"{name}: line {number} is not JSON ({err.msg}); give a job object, a list "
                "response, a JSON array or JSON lines"
            ) from None
        except ValueError as err:
            raise UsageProblem(f"{name}: line {number}: {err}") from None
    return objects


def ingest(
    engine: Engine,
    source_id: int,
    objects: Iterable[Any],
    observed_at: datetime | None = None,
    *,
    secrets: Sequence[str] = (),
) -> RunSummary:
    """Record job objects saved earlier, all as seen at ``observed_at`` (default: now).

    ``secrets`` (the API token, when known) are scrubbed from the objects first. Where one
    job appears several times, its first object is the one recorded for that time and the
    others are kept as raw payloads (a conflict, named in the warnings); the same object
    ingested again at the same time adds nothing.
    """
    summary = RunSummary("ingest")
    started = time.monotonic()
    at = observed_at or _now()
    run_id = store.start_run(engine, "ingest", source_id)
    try:
        records, errors = _parse_items(scrub(list(objects), secrets))
        for error in errors:
            _report(summary, error)
        _save(engine, source_id, [Observation(r, at) for r in records], summary)
    except KeyboardInterrupt as err:
        _interrupted(summary, engine, err)
        raise
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
    progress: Progress | None = None,
) -> Iterator[RunSummary]:
    """Snapshot every ``interval`` seconds until the watched jobs are all finished.

    Watches ``plan.job_ids``, or (when empty) every job: each pass is then an incremental
    sync (new jobs are seen too), and watching ends when none is left unfinished. A watched
    job the store does not have after a pass (the API does not know it) is not waited for.
    A pass that could not go on (``fatal``) ends the watch. Yields each pass's summary.
    """
    while True:
        started = time.monotonic()
        summary = snapshot(
            engine, client, source_id, plan, command="watch", clock=clock, progress=progress
        )
        yield summary
        if summary.fatal or not _any_unfinished(engine, source_id, plan.job_ids):
            return
        sleep(max(0.0, interval - (time.monotonic() - started)))


def _any_unfinished(engine: Engine, source_id: int, job_ids: Sequence[str]) -> bool:
    unfinished = set(store.unfinished_job_ids(engine, source_id))
    return bool(unfinished & set(job_ids)) if job_ids else bool(unfinished)
