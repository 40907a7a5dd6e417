"""Recording observations of jobs, and the few reads the collector needs.

Callers hand in parsed records (:mod:`ftlog.parse`) and get plain results back; rows and
sessions stay in here. A batch of observations is written in one transaction that first
takes the write lock (SQLite) or locks the jobs' rows (Postgres), so overlapping collectors
serialise per job and never both record the same change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, bindparam, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert

from ftlog.db import write_transaction
from ftlog.models import (
    TERMINAL_STATUSES,
    CollectorRun,
    Hyperparameters,
    Job,
    Notification,
    RawPayload,
    Snapshot,
    Source,
    StatusChange,
    table,
)
from ftlog.parse import JobRecord, JobState

log = logging.getLogger(__name__)

_jobs = table(Job)
_hyper = table(Hyperparameters)
_payloads = table(RawPayload)
_snapshots = table(Snapshot)
_history = table(StatusChange)
_runs = table(CollectorRun)
_sources = table(Source)
_notifications = table(Notification)

DEADLOCK_RETRIES = 3


@dataclass(frozen=True, slots=True)
class Observation:
    """A job object as parsed, and when ftlog saw it."""

    record: JobRecord
    observed_at: datetime


@dataclass(frozen=True, slots=True)
class Transition:
    """A status change that this save recorded (for summaries and notifications)."""

    job_id: str
    from_status: str | None
    to_status: str
    observed_at: datetime
    model: str | None
    error_message: str | None


@dataclass(slots=True)
class SaveResult:
    seen: int = 0
    new_jobs: int = 0
    changed: int = 0
    """Jobs whose object differed from the stored one (new jobs included)."""
    snapshots_added: int = 0
    stale: int = 0
    """Observations older than the job's latest one: kept as raw payloads only."""
    transitions: list[Transition] = field(default_factory=list)

    def add(self, other: SaveResult) -> None:
        self.seen += other.seen
        self.new_jobs += other.new_jobs
        self.changed += other.changed
        self.snapshots_added += other.snapshots_added
        self.stale += other.stale
        self.transitions.extend(other.transitions)


@dataclass(slots=True)
class _Current:
    """What the store holds for a job, updated as the batch's observations are applied."""

    pk: int
    status: str
    sha256: str
    last_seen_at: datetime
    snapshot_state: JobState | None
    snapshot_pk: int | None
    """The stored current snapshot, unless this batch started a new one:"""
    pending_snapshot: dict[str, Any] | None = None
    inserted: bool = False
    """The row was created by this batch from the observation not yet applied."""


# --- sources and runs ---------------------------------------------------------------------


def ensure_source(engine: Engine, name: str, base_url: str) -> int:
    """The id of the source called ``name``, created if new. Its base URL is kept current."""
    now = _now()
    with write_transaction(engine) as conn:
        stmt = insert_for(conn, _sources).values(name=name, base_url=base_url, created_at=now)
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
        pk, stored_url = conn.execute(
            select(_sources.c.id, _sources.c.base_url).where(_sources.c.name == name)
        ).one()
        if stored_url != base_url:
            log.info("source %s: base URL changed to %s", name, base_url)
            conn.execute(_sources.update().where(_sources.c.id == pk).values(base_url=base_url))
    return int(pk)


def start_run(engine: Engine, command: str, source_id: int | None) -> int:
    with write_transaction(engine) as conn:
        pk = conn.execute(
            _runs.insert()
            .values(
                command=command,
                source_id=source_id,
                started_at=_now(),
                outcome="running",
                list_completed=False,
                requests=0,
                jobs_seen=0,
                jobs_changed=0,
                snapshots_added=0,
                transitions=0,
                errors=0,
            )
            .returning(_runs.c.id)
        ).scalar_one()
    return int(pk)


def finish_run(
    engine: Engine,
    run_id: int,
    result: SaveResult,
    *,
    requests: int,
    errors: Sequence[str],
    outcome: str,
    list_completed: bool = False,
) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            _runs.update()
            .where(_runs.c.id == run_id)
            .values(
                finished_at=_now(),
                outcome=outcome,
                list_completed=list_completed,
                requests=requests,
                jobs_seen=result.seen,
                jobs_changed=result.changed,
                snapshots_added=result.snapshots_added,
                transitions=len(result.transitions),
                errors=len(errors),
                error_details=list(errors) or None,
            )
        )


def last_completed_listing(engine: Engine, source_id: int) -> datetime | None:
    """When the latest run that paged the job list to completion finished, if any did."""
    with engine.connect() as conn:
        finished: datetime | None = conn.execute(
            select(func.max(_runs.c.finished_at)).where(
                _runs.c.source_id == source_id, _runs.c.list_completed.is_(True)
            )
        ).scalar_one()
    return finished


# --- reads for the collector --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredJob:
    status: str
    sha256: str
    first_seen_at: datetime


def stored_jobs(engine: Engine, source_id: int, job_ids: Iterable[str]) -> dict[str, StoredJob]:
    """Status, object hash and first sighting of the given jobs that the store has."""
    ids = list(job_ids)
    if not ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                _jobs.c.job_id, _jobs.c.status, _jobs.c.payload_sha256, _jobs.c.first_seen_at
            ).where(_jobs.c.source_id == source_id, _jobs.c.job_id.in_(ids))
        )
        return {
            row.job_id: StoredJob(row.status, row.payload_sha256, row.first_seen_at) for row in rows
        }


def unfinished_job_ids(engine: Engine, source_id: int) -> list[str]:
    """Jobs of the source whose last recorded status is not terminal, newest first."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(_jobs.c.job_id)
                .where(_jobs.c.source_id == source_id, _jobs.c.status.not_in(TERMINAL_STATUSES))
                .order_by(_jobs.c.created_at.desc())
            ).scalars()
        )


# --- the write path -----------------------------------------------------------------------


def refresh_statistics(engine: Engine) -> None:
    """Let Postgres's planner see how big the tables have grown (ANALYZE, as after any bulk
    load). A new store has no statistics until autovacuum runs, and the planner then takes
    the jobs table for empty and scans it for every page, so a first sync slows as it grows.
    SQLite needs nothing of the kind."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE jobs, snapshots, status_history, raw_payloads")


def save_observations(
    engine: Engine,
    source_id: int,
    observations: Sequence[Observation],
    notify_channels: Sequence[str] = (),
) -> SaveResult:
    """Record a batch of observations atomically; see the module docstring for locking.

    Per job: the job row and hyperparameters follow the latest object; the object is kept
    once per distinct content; a snapshot row is added only when the observed state changed
    (else the current one's last-observed time moves); a status change adds a history row.
    Observations are applied in time order; one older than the job's latest is stale.
    Each status change (not a first sighting) is queued for every channel in
    ``notify_channels`` in the same transaction (see :mod:`ftlog.notify`).
    """
    if not observations:
        return SaveResult()
    ordered = sorted(observations, key=lambda o: (o.observed_at, o.record.job_id))
    for attempt in range(1, DEADLOCK_RETRIES + 1):
        try:
            with write_transaction(engine) as conn:
                return _save(conn, source_id, ordered, notify_channels)
        except DBAPIError as err:
            if attempt == DEADLOCK_RETRIES or not _is_retryable(err):
                raise
            log.info("batch hit a lock conflict (%s); retrying", type(err.orig).__name__)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def _is_retryable(err: DBAPIError) -> bool:
    return getattr(err.orig, "sqlstate", None) in {"40P01", "40001"}


def _save(
    conn: Connection,
    source_id: int,
    observations: Sequence[Observation],
    notify_channels: Sequence[str],
) -> SaveResult:
    result = SaveResult()
    job_ids = sorted({o.record.job_id for o in observations})
    inserted = _insert_new_jobs(conn, source_id, observations, job_ids)
    current = _lock_and_read(conn, source_id, job_ids)
    for job_id in inserted:
        current[job_id].inserted = True
    writes = _Writes()
    for obs in observations:
        _apply(obs, current, writes, result)
    writes.flush(conn, notify_channels)
    result.seen = len(observations)
    return result


def _insert_new_jobs(
    conn: Connection, source_id: int, observations: Sequence[Observation], job_ids: list[str]
) -> set[str]:
    """Create rows for jobs the store has not seen, from their first observation, in job-id
    order (a fixed lock order); returns the ids of the rows this call created."""
    known = set(
        conn.execute(
            select(_jobs.c.job_id).where(
                _jobs.c.source_id == source_id, _jobs.c.job_id.in_(job_ids)
            )
        ).scalars()
    )
    first: dict[str, Observation] = {}
    for obs in observations:
        if obs.record.job_id not in known:
            first.setdefault(obs.record.job_id, obs)
    if not first:
        return set()
    rows = [
        {
            "source_id": source_id,
            "job_id": job_id,
            "status": obs.record.status,
            "created_at": obs.record.created_at,
            "first_seen_at": obs.observed_at,
            "last_seen_at": obs.observed_at,
            "payload_sha256": obs.record.sha256,
            **obs.record.fields,
        }
        for job_id, obs in sorted(first.items())
    ]
    stmt = (
        insert_for(conn, _jobs)
        .on_conflict_do_nothing(index_elements=["source_id", "job_id"])
        .returning(_jobs.c.job_id)
    )
    # A collector racing us may have created some meanwhile: those are not ours to start.
    return set(conn.execute(stmt, rows).scalars())


def _lock_and_read(conn: Connection, source_id: int, job_ids: list[str]) -> dict[str, _Current]:
    jobs_query = (
        select(
            _jobs.c.id, _jobs.c.job_id, _jobs.c.status, _jobs.c.payload_sha256, _jobs.c.last_seen_at
        )
        .where(_jobs.c.source_id == source_id, _jobs.c.job_id.in_(job_ids))
        .order_by(_jobs.c.id)
    )
    if conn.dialect.name == "postgresql":
        jobs_query = jobs_query.with_for_update()
    jobs = conn.execute(jobs_query).all()
    pks = [row.id for row in jobs]
    latest = (
        select(_snapshots.c.job_pk, func.max(_snapshots.c.first_observed_at).label("first"))
        .where(_snapshots.c.job_pk.in_(pks))
        .group_by(_snapshots.c.job_pk)
        .subquery()
    )
    snapshots = {
        row.job_pk: row
        for row in conn.execute(
            select(_snapshots).join(
                latest,
                and_(
                    _snapshots.c.job_pk == latest.c.job_pk,
                    _snapshots.c.first_observed_at == latest.c.first,
                ),
            )
        )
    }
    current = {}
    for row in jobs:
        snap = snapshots.get(row.id)
        current[row.job_id] = _Current(
            pk=row.id,
            status=row.status,
            sha256=row.payload_sha256,
            last_seen_at=row.last_seen_at,
            snapshot_state=_state_of(snap) if snap else None,
            snapshot_pk=snap.id if snap else None,
        )
    return current


def _state_of(row: Any) -> JobState:
    return JobState(
        status=row.status,
        trained_tokens=row.trained_tokens,
        trained_steps=row.trained_steps,
        total_steps=row.total_steps,
        estimated_finish=row.estimated_finish,
    )


def _apply(
    obs: Observation, current: dict[str, _Current], writes: _Writes, result: SaveResult
) -> None:
    """Decide what one observation changes; ``current`` follows, for later ones in the batch."""
    record, at = obs.record, obs.observed_at
    cur = current[record.job_id]
    writes.add_payload(cur.pk, record, at)
    is_new, cur.inserted = cur.inserted, False
    if not is_new and at < cur.last_seen_at:
        result.stale += 1
        return
    if is_new:
        # The row was inserted from this very observation: only the other tables are due.
        result.new_jobs += 1
    else:
        writes.jobs.setdefault(cur.pk, {"pk": cur.pk})["last_seen_at"] = at
    if is_new or record.sha256 != cur.sha256:
        result.changed += 1
        if not is_new:
            writes.jobs[cur.pk] |= {
                "status": record.status,
                "created_at": record.created_at,
                "payload_sha256": record.sha256,
                **record.fields,
            }
        writes.hyperparameters[cur.pk] = {
            "job_pk": cur.pk,
            **record.hyperparameters.typed,
            "extra": record.hyperparameters.extra,
        }
    if is_new or record.status != cur.status:
        previous = None if is_new else cur.last_seen_at
        from_status = None if is_new else cur.status
        writes.transitions.append(
            {
                "job_pk": cur.pk,
                "from_status": from_status,
                "to_status": record.status,
                "observed_at": at,
                "previous_observed_at": previous,
            }
        )
        result.transitions.append(
            Transition(
                record.job_id,
                from_status,
                record.status,
                at,
                record.fields.get("model"),
                record.fields.get("error_message"),
            )
        )
    _record_state(cur, record.state, at, writes, result)
    cur.status, cur.sha256, cur.last_seen_at = record.status, record.sha256, at


def _record_state(
    cur: _Current, state: JobState, at: datetime, writes: _Writes, result: SaveResult
) -> None:
    """Extend the current snapshot when the state is unchanged, else start a new one."""
    if state == cur.snapshot_state:
        if cur.pending_snapshot is not None:
            cur.pending_snapshot["last_observed_at"] = at
            cur.pending_snapshot["observations"] += 1
            return
        if cur.snapshot_pk is not None:
            _, count = writes.snapshot_extends.get(cur.snapshot_pk, (at, 0))
            writes.snapshot_extends[cur.snapshot_pk] = (at, count + 1)
            return
    row = {
        "job_pk": cur.pk,
        "status": state.status,
        "trained_tokens": state.trained_tokens,
        "trained_steps": state.trained_steps,
        "total_steps": state.total_steps,
        "estimated_finish": state.estimated_finish,
        "first_observed_at": at,
        "last_observed_at": at,
        "observations": 1,
    }
    writes.snapshots.append(row)
    result.snapshots_added += 1
    cur.snapshot_state, cur.pending_snapshot = state, row


@dataclass(slots=True)
class _Writes:
    """The statements one batch will execute, collected so each runs as one executemany."""

    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Per job, the columns to set: all of them when its object changed, else last_seen_at."""
    hyperparameters: dict[int, dict[str, Any]] = field(default_factory=dict)
    payloads: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    snapshot_extends: dict[int, tuple[datetime, int]] = field(default_factory=dict)
    transitions: list[dict[str, Any]] = field(default_factory=list)

    def add_payload(self, job_pk: int, record: JobRecord, at: datetime) -> None:
        row = self.payloads.get((job_pk, record.sha256))
        if row is None:
            self.payloads[(job_pk, record.sha256)] = {
                "job_pk": job_pk,
                "sha256": record.sha256,
                "body": record.body,
                "first_observed_at": at,
                "last_observed_at": at,
            }
        else:
            row["first_observed_at"] = min(row["first_observed_at"], at)
            row["last_observed_at"] = max(row["last_observed_at"], at)

    def flush(self, conn: Connection, notify_channels: Sequence[str]) -> None:
        by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in self.jobs.values():
            by_shape.setdefault(tuple(row), []).append(row)
        for rows in by_shape.values():
            conn.execute(_jobs.update().where(_jobs.c.id == bindparam("pk")), rows)
        if self.hyperparameters:
            self._upsert_hyperparameters(conn)
        if self.payloads:
            self._upsert_payloads(conn)
        if self.snapshot_extends:
            conn.execute(
                _snapshots.update()
                .where(_snapshots.c.id == bindparam("pk"))
                .values(
                    last_observed_at=bindparam("at"),
                    observations=_snapshots.c.observations + bindparam("count"),
                ),
                [
                    {"pk": pk, "at": at, "count": count}
                    for pk, (at, count) in self.snapshot_extends.items()
                ],
            )
        if self.snapshots:
            conn.execute(_snapshots.insert(), self.snapshots)
        if self.transitions:
            self._insert_transitions(conn, notify_channels)

    def _insert_transitions(self, conn: Connection, notify_channels: Sequence[str]) -> None:
        if not notify_channels:
            conn.execute(_history.insert(), self.transitions)
            return
        inserted = conn.execute(
            _history.insert().returning(_history.c.id, _history.c.from_status),
            self.transitions,
        )
        changes = [row.id for row in inserted if row.from_status is not None]
        if changes:
            now = _now()
            conn.execute(
                _notifications.insert(),
                [
                    {
                        "status_change_id": change,
                        "channel": channel,
                        "created_at": now,
                        "attempts": 0,
                    }
                    for change in changes
                    for channel in notify_channels
                ],
            )

    def _upsert_hyperparameters(self, conn: Connection) -> None:
        stmt = insert_for(conn, _hyper)
        columns = [c.name for c in _hyper.columns if c.name != "job_pk"]
        stmt = stmt.on_conflict_do_update(
            index_elements=["job_pk"], set_={name: stmt.excluded[name] for name in columns}
        )
        conn.execute(stmt, list(self.hyperparameters.values()))

    def _upsert_payloads(self, conn: Connection) -> None:
        stmt = insert_for(conn, _payloads)
        new, old = stmt.excluded, _payloads.c
        stmt = stmt.on_conflict_do_update(
            index_elements=["job_pk", "sha256"],
            set_={
                "first_observed_at": case(
                    (new.first_observed_at < old.first_observed_at, new.first_observed_at),
                    else_=old.first_observed_at,
                ),
                "last_observed_at": case(
                    (new.last_observed_at > old.last_observed_at, new.last_observed_at),
                    else_=old.last_observed_at,
                ),
            },
        )
        conn.execute(stmt, list(self.payloads.values()))


def insert_for(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which has on_conflict_do_nothing / on_conflict_do_update."""
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt: Insert = dialect_insert(table)
    return stmt


def _now() -> datetime:
    return datetime.now(UTC)
