"""Events and checkpoints of jobs: fetched for jobs that changed, several at a time.

A job's details are fetched when its object changed since they were last fetched (so while
it trains, and once more after it finishes), and only what is newer than the newest stored
item (the API lists newest first; the client stops at the first item already known).

**Failures stay with their job.** A job whose details cannot be fetched or stored is
reported and asked again next run (its marker is not moved). A 404 for one job's events is
that job's (it was deleted, say): once the endpoint has answered for another job, the job is
marked fetched and asked again only if it changes. Only when the first jobs asked all answer
404 and none answers otherwise is the endpoint taken as missing for this run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from ftlog import store
from ftlog.client import FineTuningClient, job_id_problem
from ftlog.errors import APIError, NotFound, PayloadError, shown
from ftlog.fetching import Breaker, Progress, fetch_all
from ftlog.parse import CheckpointRecord, EventRecord, parse_checkpoint, parse_event
from ftlog.store import DetailKind, DetailTarget, FetchedDetails

log = logging.getLogger(__name__)

PAGE_SIZE = 100
SAVE_BATCH = 50
"""Jobs' details saved per transaction."""
MISSING_AFTER = 3
"""This many 404s, with no job answered otherwise, mean the API has no such endpoint."""


@dataclass(slots=True)
class DetailsResult:
    added: dict[str, int] = field(default_factory=lambda: {"events": 0, "checkpoints": 0})
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing_endpoints: list[str] = field(default_factory=list)
    """Kinds the API has no endpoint for (see the module docstring): not asked again in this
    run."""


def collect_details(
    engine: Engine,
    client: FineTuningClient,
    source_id: int,
    kinds: Sequence[DetailKind],
    *,
    concurrency: int = 1,
    progress: Progress | None = None,
) -> DetailsResult:
    """Fetch and store the new events/checkpoints of every job of the source that changed
    since its details were last fetched, ``concurrency`` jobs at a time."""
    result = DetailsResult()
    for kind in kinds:
        targets = store.jobs_needing_details(engine, source_id, kind)
        _collect_kind(engine, client, kind, targets, result, concurrency, progress)
    return result


def _collect_kind(
    engine: Engine,
    client: FineTuningClient,
    kind: DetailKind,
    targets: list[DetailTarget],
    result: DetailsResult,
    concurrency: int,
    progress: Progress | None,
) -> None:
    if progress is not None and targets:
        progress.start(kind, len(targets))
    verdict = _EndpointVerdict(kind)
    breaker = Breaker()
    unrequestable: list[DetailTarget] = []
    batch: list[FetchedDetails] = []

    def save(final: bool = False) -> None:
        if batch and (final or len(batch) >= SAVE_BATCH):
            saved = store.save_details(engine, kind, batch)
            result.added[kind] += saved.added
            result.errors.extend(saved.failures or ())
            batch.clear()

    for target, outcome in _fetched(client, kind, targets, verdict, breaker, concurrency):
        breaker.record(outcome)
        if progress is not None:
            progress.advance()
        if isinstance(outcome, NotFound):
            verdict.not_found(target)
        elif isinstance(outcome, PayloadError):
            result.errors.append(f"{kind} of {outcome}")
            if job_id_problem(target.job_id):
                unrequestable.append(target)  # reported once: asked again only if it changes
        elif isinstance(outcome, APIError):
            result.errors.append(f"{kind} of job {shown(target.job_id)}: {outcome}")
        else:
            assert isinstance(outcome, _Fetched)
            verdict.answered()
            result.errors.extend(outcome.errors)
            result.warnings.extend(_problems(kind, outcome.details))
            if outcome.problem:
                result.errors.append(
                    f"{kind} of job {shown(target.job_id)}: {outcome.problem}; "
                    "kept what it sent, asked again next run"
                )
            batch.append(outcome.details)
            save()
    save(final=True)
    if breaker.tripped():
        result.errors.append(
            f"stopped fetching {kind} after {breaker.limit} requests in a row failed: the API "
            "seems to be failing; the next run asks again"
        )
    gone = verdict.gone_jobs()
    store.mark_details_synced(engine, kind, [*gone, *unrequestable])
    result.warnings.extend(
        f"{kind} of job {shown(t.job_id)}: the API has none for it (HTTP 404; deleted?); "
        "asked again only if the job changes"
        for t in gone
    )
    if verdict.missing:
        result.missing_endpoints.append(kind)
        result.warnings.append(
            f"the API answered 404 for the {kind} of the first {len(verdict.waiting)} jobs "
            f"asked and for no job otherwise: it seems to have no {kind} endpoint; not asked "
            "again in this run"
        )


def _fetched(
    client: FineTuningClient,
    kind: DetailKind,
    targets: list[DetailTarget],
    verdict: _EndpointVerdict,
    breaker: Breaker,
    concurrency: int,
) -> Iterator[tuple[DetailTarget, _Fetched | APIError | PayloadError]]:
    """The targets' details: one job at a time until the endpoint has answered (so that an
    API without it costs a few requests, not one per worker), then several at a time."""

    def fetch(target: DetailTarget) -> _Fetched:
        if job_id_problem(target.job_id):
            raise PayloadError(target.job_id, f"{job_id_problem(target.job_id)}; not requested")
        return _fetch(client, kind, target)

    remaining = iter(targets)
    yield from fetch_all(remaining, fetch, 1, lambda: verdict.decided() or breaker.tripped())
    if verdict.exists:
        yield from fetch_all(remaining, fetch, concurrency, breaker.tripped)


class _EndpointVerdict:
    """Tells a job the API does not know (404) from an endpoint the API does not have."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.exists = False
        self.missing = False
        self.waiting: list[DetailTarget] = []
        """404s before the endpoint answered for any job: their verdict is pending."""
        self._gone: list[DetailTarget] = []

    def answered(self) -> None:
        self.exists = True

    def not_found(self, target: DetailTarget) -> None:
        if self.exists:
            self._gone.append(target)
            return
        self.waiting.append(target)
        if len(self.waiting) >= MISSING_AFTER:
            self.missing = True

    def decided(self) -> bool:
        return self.exists or self.missing

    def gone_jobs(self) -> list[DetailTarget]:
        """Jobs whose 404 is theirs: the endpoint answered for another job."""
        return self._gone + self.waiting if self.exists else []


@dataclass(frozen=True, slots=True)
class _Fetched:
    details: FetchedDetails
    errors: list[str]
    """Items that could not be parsed (no id or time): reported, the others kept."""
    problem: str | None
    """How the listing went wrong, when it did."""


def _fetch(client: FineTuningClient, kind: DetailKind, target: DetailTarget) -> _Fetched:
    new = client.new_items(target.job_id, kind, target.newest_id, limit=PAGE_SIZE)
    parse: Callable[[Any, str], EventRecord | CheckpointRecord] = (
        parse_event if kind == "events" else parse_checkpoint
    )
    records, errors = [], []
    for item in new.items:
        try:
            records.append(parse(item, target.job_id))
        except PayloadError as err:
            errors.append(f"{kind} of {err}")
    return _Fetched(FetchedDetails(target, records, new.complete), errors, new.problem)


def _problems(kind: str, fetched: FetchedDetails) -> Iterable[str]:
    for record in fetched.records:
        if record.problems:
            item = record.event_id if isinstance(record, EventRecord) else record.checkpoint_id
            yield (
                f"{kind} of job {shown(fetched.target.job_id)}, {shown(item)}: "
                f"{'; '.join(record.problems)} (kept in its body only)"
            )
