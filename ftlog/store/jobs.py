"""Recording observations of jobs: the job row, its hyperparameters, the raw object, the
snapshots of its state and its status changes.

A batch is written in one transaction that first takes the write lock (SQLite) or locks the
jobs' rows in a fixed order (Postgres), so overlapping collectors serialise per job and never
both record the same change. **The unit of failure is one job:** when the database refuses
a batch, it is saved again job by job, each in a savepoint, and only the jobs it still
refuses are reported (:attr:`SaveResult.failures`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, case, func, select
from sqlalchemy.exc import DBAPIError

from ftlog.errors import shown
from ftlog.parse import JOB_FIELD_NAMES, JobRecord, JobState
from ftlog.store import _sql as sql
from ftlog.store import bulk

log = logging.getLogger(__name__)

_EPOCH = datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True, slots=True)
class Observation:
    """A job object as parsed, and when ftlog saw it."""

    record: JobRecord
    observed_at: datetime


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A job's status changed, or (``from_status`` None) the job was first seen in it."""

    job_id: str
    from_status: str | None
    to_status: str
    observed_at: datetime
    model: str | None = None
    error_message: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class JobFailure:
    """A job the database refused: nothing of it was written."""

    job_id: str
    reason: str

    def __str__(self) -> str:
        return f"job {shown(self.job_id)}: the database refused it ({self.reason})"


@dataclass(slots=True)
class SaveResult:
    seen: int = 0
    new_jobs: int = 0
    changed: int = 0
    """Jobs whose object differed from the stored one (new jobs included)."""
    snapshots_added: int = 0
    stale: int = 0
    """Observations older than the job's latest one: kept as raw payloads only."""
    conflicts: int = 0
    """Objects that differ from the one recorded for the same job and observation time: kept
    as raw payloads only (the first one recorded for that time stands)."""
    status_changes: list[StatusChange] = field(default_factory=list)
    failures: list[JobFailure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """One line per new object holding values its typed columns could not keep, and per
    conflicting object: nothing is lost (the raw payload has it), but the run says so."""

    def add(self, other: SaveResult) -> None:
        self.seen += other.seen
        self.new_jobs += other.new_jobs
        self.changed += other.changed
        self.snapshots_added += other.snapshots_added
        self.stale += other.stale
        self.conflicts += other.conflicts
        self.status_changes.extend(other.status_changes)
        self.failures.extend(other.failures)
        self.problems.extend(other.problems)


def save_observations(
    engine: Engine,
    source_id: int,
    observations: Sequence[Observation],
    notify_channels: Sequence[str] = (),
) -> SaveResult:
    """Record a batch of observations; see the module docstring for locking and failures.

    Per job: the job row and hyperparameters follow the latest object; the object is kept
    once per distinct content; a snapshot row is added only when the observed state changed
    (else the current one's last-observed time moves); a status change adds a history row.
    Observations are applied in time order (the batch's own order among equal times). One
    older than the job's latest is stale; one at the same time as the job's latest adds
    nothing when it is the same object, and is a conflict (kept, not applied) when it is not.
    Each status change (not a first sighting) is queued for every channel in
    ``notify_channels`` in the same transaction (see :mod:`ftlog.notify`).
    """
    if not observations:
        return SaveResult()
    ordered = sorted(observations, key=lambda o: o.observed_at)
    try:
        return sql.in_transaction(
            engine, lambda conn: _save(conn, source_id, ordered, notify_channels)
        )
    except DBAPIError as err:
        if sql.is_lock_problem(err):
            raise
        log.info("the database refused a batch (%s); saving it job by job", sql.first_line(err))
    return sql.in_transaction(
        engine, lambda conn: _save_each(conn, source_id, ordered, notify_channels)
    )


def _save_each(
    conn: Connection,
    source_id: int,
    observations: Sequence[Observation],
    notify_channels: Sequence[str],
) -> SaveResult:
    """Save each job's observations in a savepoint of its own, in job-id order (the lock
    order); a job the database refuses is reported, the others are kept."""
    by_job: dict[str, list[Observation]] = {}
    for obs in observations:
        by_job.setdefault(obs.record.job_id, []).append(obs)
    result = SaveResult()
    for job_id in sorted(by_job):
        savepoint = conn.begin_nested()
        try:
            result.add(_save(conn, source_id, by_job[job_id], notify_channels))
        except DBAPIError as err:
            savepoint.rollback()
            if sql.is_lock_problem(err):
                raise
            failure = JobFailure(job_id, sql.first_line(err))
            log.error("%s", failure)
            result.failures.append(failure)
            result.seen += len(by_job[job_id])
        else:
            savepoint.commit()
    return result


@dataclass(slots=True)
class _Current:
    """What the store holds for a job, updated as the batch's observations are applied."""

    pk: int
    status: str
    sha256: str
    last_seen_at: datetime
    snapshot_state: JobState | None
    snapshot_pk: int | None
    pending_snapshot: dict[str, Any] | None = None
    """The snapshot this batch started, not written yet (later observations extend it)."""
    inserted: bool = False
    """The row was created by this batch from the observation not yet applied."""


def _save(
    conn: Connection,
    source_id: int,
    observations: Sequence[Observation],
    notify_channels: Sequence[str],
) -> SaveResult:
    result = SaveResult()
    job_ids = sorted({o.record.job_id for o in observations})
    created = _insert_new_jobs(conn, source_id, observations, job_ids)
    current = _lock_and_read(conn, source_id, [j for j in job_ids if j not in created])
    writes = _Writes(fresh=set(created.values()))
    for job_id, pk in created.items():
        current[job_id] = _Current(pk, "", "", _EPOCH, None, None, inserted=True)
    for obs in observations:
        _apply(obs, current, writes, result)
    writes.flush(conn, notify_channels)
    result.seen = len(observations)
    return result


def job_columns(record: JobRecord) -> dict[str, Any]:
    """The ``jobs`` columns a job object sets (all but keys and bookkeeping)."""
    values = {name: getattr(record.fields, name) for name in JOB_FIELD_NAMES}
    state = record.state
    values.update(
        status=record.status,
        created_at=record.created_at,
        trained_tokens=state.trained_tokens,
        trained_steps=state.trained_steps,
        total_steps=state.total_steps,
        estimated_finish=state.estimated_finish,
        payload_sha256=record.sha256,
    )
    return values


def _insert_new_jobs(
    conn: Connection, source_id: int, observations: Sequence[Observation], job_ids: list[str]
) -> dict[str, int]:
    """Create rows for jobs the store has not seen, from their first observation, in job-id
    order (a fixed lock order); returns the job ids and keys of the rows this call created."""
    known = set(
        conn.execute(
            select(sql.jobs.c.job_id).where(
                sql.jobs.c.source_id == source_id, sql.jobs.c.job_id.in_(job_ids)
            )
        ).scalars()
    )
    first: dict[str, Observation] = {}
    for obs in observations:
        if obs.record.job_id not in known:
            first.setdefault(obs.record.job_id, obs)
    if not first:
        return {}
    rows = [
        {
            "source_id": source_id,
            "job_id": job_id,
            "first_seen_at": obs.observed_at,
            "last_seen_at": obs.observed_at,
            **job_columns(obs.record),
        }
        for job_id, obs in sorted(first.items())
    ]
    j = sql.jobs.c
    if conn.dialect.name == "sqlite":
        # The write lock, taken at BEGIN, was held when ``known`` was read: nobody else can
        # have created one of these since.
        bulk.insert_rows(conn, sql.jobs, rows)
        query = select(j.job_id, j.id).where(j.source_id == source_id, j.job_id.in_(list(first)))
        return {row.job_id: row.id for row in conn.execute(query)}
    # A collector racing us may have created some meanwhile: those are not ours to start.
    created = bulk.insert_new_rows(
        conn, sql.jobs, rows, unique=["source_id", "job_id"], returning=["job_id", "id"]
    )
    return dict(created)


def _lock_and_read(conn: Connection, source_id: int, job_ids: list[str]) -> dict[str, _Current]:
    """The stored state of jobs the store had, their rows locked (Postgres)."""
    if not job_ids:
        return {}
    j, s = sql.jobs.c, sql.snapshots.c
    jobs_query = (
        select(j.id, j.job_id, j.status, j.payload_sha256, j.last_seen_at)
        .where(j.source_id == source_id, j.job_id.in_(job_ids))
        .order_by(j.id)
    )
    if conn.dialect.name == "postgresql":
        jobs_query = jobs_query.with_for_update()
    jobs = conn.execute(jobs_query).all()
    pks = [row.id for row in jobs]
    snapshots = {}
    if pks:
        latest = (
            select(s.job_pk, func.max(s.first_observed_at).label("first"))
            .where(s.job_pk.in_(pks))
            .group_by(s.job_pk)
            .subquery()
        )
        snapshots = {
            row.job_pk: row
            for row in conn.execute(
                select(sql.snapshots).join(
                    latest,
                    and_(s.job_pk == latest.c.job_pk, s.first_observed_at == latest.c.first),
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
    if not is_new and at <= cur.last_seen_at:
        if at < cur.last_seen_at:
            result.stale += 1
        elif record.sha256 != cur.sha256:
            result.conflicts += 1
            result.problems.append(
                f"job {shown(record.job_id)}: another object for an observation time already "
                f"recorded ({at.isoformat()}); kept as a raw payload only"
            )
        return  # the same object at the same time again: nothing to add or count
    changed = is_new or record.sha256 != cur.sha256
    if is_new:
        # The row was inserted from this very observation: only the other tables are due.
        result.new_jobs += 1
    else:
        writes.jobs.setdefault(cur.pk, {"pk": cur.pk})["last_seen_at"] = at
    if changed:
        result.changed += 1
        if not is_new:
            writes.jobs[cur.pk] |= job_columns(record)
        writes.hyperparameters[cur.pk] = {
            "job_pk": cur.pk,
            **record.hyperparameters.typed,
            "extra": record.hyperparameters.extra,
        }
        if record.problems:
            result.problems.append(
                f"job {shown(record.job_id)}: {'; '.join(record.problems)} "
                "(kept in the raw payload only)"
            )
    if is_new or record.status != cur.status:
        _record_status_change(cur, record, at, is_new, writes, result)
    _record_state(cur, record.state, at, writes, result)
    cur.status, cur.sha256, cur.last_seen_at = record.status, record.sha256, at


def _record_status_change(
    cur: _Current,
    record: JobRecord,
    at: datetime,
    first_sighting: bool,
    writes: _Writes,
    result: SaveResult,
) -> None:
    change = StatusChange(
        record.job_id,
        None if first_sighting else cur.status,
        record.status,
        at,
        record.fields.model,
        record.fields.error_message,
    )
    writes.status_changes.append(
        {
            "job_pk": cur.pk,
            "from_status": change.from_status,
            "to_status": change.to_status,
            "observed_at": at,
            "previous_observed_at": None if first_sighting else cur.last_seen_at,
        }
    )
    result.status_changes.append(change)


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
    status_changes: list[dict[str, Any]] = field(default_factory=list)
    fresh: set[int] = field(default_factory=set)
    """Jobs this batch created: their other rows are plain INSERTs (nothing to conflict with)."""

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
            conn.execute(sql.jobs.update().where(sql.jobs.c.id == bindparam("pk")), rows)
        if self.hyperparameters:
            new, old = self._split(self.hyperparameters.values())
            bulk.insert_rows(conn, sql.hyperparameters, new)
            if old:
                self._upsert_hyperparameters(conn, old)
        if self.payloads:
            new, old = self._split(self.payloads.values())
            bulk.insert_rows(conn, sql.payloads, new)
            if old:
                self._upsert_payloads(conn, old)
        if self.snapshot_extends:
            s = sql.snapshots
            conn.execute(
                s.update()
                .where(s.c.id == bindparam("pk"))
                .values(
                    last_observed_at=bindparam("at"),
                    observations=s.c.observations + bindparam("count"),
                ),
                [
                    {"pk": pk, "at": at, "count": count}
                    for pk, (at, count) in self.snapshot_extends.items()
                ],
            )
        bulk.insert_rows(conn, sql.snapshots, self.snapshots)
        if self.status_changes:
            self._insert_status_changes(conn, notify_channels)

    def _split(
        self, rows: Iterable[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Rows of jobs this batch created, and the others."""
        new: list[dict[str, Any]] = []
        old: list[dict[str, Any]] = []
        for row in rows:
            (new if row["job_pk"] in self.fresh else old).append(row)
        return new, old

    def _insert_status_changes(self, conn: Connection, notify_channels: Sequence[str]) -> None:
        first_sightings_only = all(r["from_status"] is None for r in self.status_changes)
        if not notify_channels or first_sightings_only:  # nothing to tell anyone
            bulk.insert_rows(conn, sql.history, self.status_changes)
            return
        inserted = conn.execute(
            sql.history.insert().returning(sql.history.c.id, sql.history.c.from_status),
            self.status_changes,
        )
        changes = [row.id for row in inserted if row.from_status is not None]
        if changes:
            created = sql.now()
            conn.execute(
                sql.notifications.insert(),
                [
                    {
                        "status_change_id": change,
                        "channel": channel,
                        "created_at": created,
                        "attempts": 0,
                    }
                    for change in changes
                    for channel in notify_channels
                ],
            )

    def _upsert_hyperparameters(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        stmt = sql.insert_for(conn, sql.hyperparameters)
        columns = [c.name for c in sql.hyperparameters.columns if c.name != "job_pk"]
        stmt = stmt.on_conflict_do_update(
            index_elements=["job_pk"], set_={name: stmt.excluded[name] for name in columns}
        )
        conn.execute(stmt, rows)

    def _upsert_payloads(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        stmt = sql.insert_for(conn, sql.payloads)
        new, old = stmt.excluded, sql.payloads.c
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
        conn.execute(stmt, rows)
