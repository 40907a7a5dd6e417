"""Events and checkpoints of jobs: which jobs need them fetched, and storing them once each.

A job's details are due when its object changed since they were last fetched (a marker on
the job row holds the object hash they were fetched at). Items are stored once per job and id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, or_, select
from sqlalchemy.exc import DBAPIError

from ftlog.db import write_transaction
from ftlog.errors import shown
from ftlog.parse import CheckpointRecord, EventRecord
from ftlog.store import _sql as sql

log = logging.getLogger(__name__)

DetailKind = Literal["events", "checkpoints"]
DETAIL_KINDS: tuple[DetailKind, ...] = ("events", "checkpoints")

_tables: dict[DetailKind, Table] = {"events": sql.events, "checkpoints": sql.checkpoints}
_id_columns: dict[DetailKind, str] = {"events": "event_id", "checkpoints": "checkpoint_id"}
_synced_columns: dict[DetailKind, str] = {
    "events": "events_synced_sha256",
    "checkpoints": "checkpoints_synced_sha256",
}


@dataclass(frozen=True, slots=True)
class DetailTarget:
    """A job whose details of one kind are due, and the newest of them already stored."""

    job_pk: int
    job_id: str
    sha256: str
    """The job object's hash now: stored as the marker once the details are fetched."""
    newest_id: str | None
    """The id of the item stored last: the newest the API listed when it was fetched (items
    are saved oldest first). Not the latest ``created_at``, which a clock running behind or
    ahead on the provider's side would make another item."""


@dataclass(frozen=True, slots=True)
class FetchedDetails:
    """What a fetch of one job's details brought: its records, and whether the listing
    reached what was already stored (else the marker is not moved, and the next run asks
    again)."""

    target: DetailTarget
    records: Sequence[EventRecord | CheckpointRecord]
    complete: bool = True


@dataclass(slots=True)
class DetailsSaved:
    added: int = 0
    failures: list[str] | None = None


def jobs_needing_details(engine: Engine, source_id: int, kind: DetailKind) -> list[DetailTarget]:
    """Jobs of the source whose object changed since their ``kind`` was last fetched (or
    never fetched), and every running job, newest first, each with the newest item of that
    kind already stored. Running jobs are asked every run: an OpenAI job's object stays the
    same while it trains, and its progress lives in its metrics events."""
    table, j = _tables[kind], sql.jobs.c
    synced = j[_synced_columns[kind]]
    newest = (
        select(table.c[_id_columns[kind]])
        .where(table.c.job_pk == j.id)
        .order_by(table.c.id.desc())
        .limit(1)
    )
    query = (
        select(
            j.id,
            j.job_id,
            j.payload_sha256,
            newest.scalar_subquery().label("nid"),
        )
        .where(
            j.source_id == source_id,
            or_(synced.is_(None), synced != j.payload_sha256, j.status == "running"),
        )
        .order_by(j.created_at.desc(), j.id.desc())
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [DetailTarget(row.id, row.job_id, row.payload_sha256, row.nid) for row in rows]


def save_details(
    engine: Engine, kind: DetailKind, fetched: Sequence[FetchedDetails]
) -> DetailsSaved:
    """Store the fetched items once each and move each complete job's marker, all in one
    transaction; if the database refuses it, job by job (each in a savepoint), so that a job
    it still refuses is reported and costs no other."""
    if not fetched:
        return DetailsSaved()
    try:
        return sql.in_transaction(
            engine, lambda conn: DetailsSaved(sum(_save_job(conn, kind, item) for item in fetched))
        )
    except DBAPIError as err:
        if sql.is_lock_problem(err):
            raise
        log.info("the database refused a batch of %s (%s); job by job", kind, sql.first_line(err))
    return sql.in_transaction(engine, lambda conn: _save_each(conn, kind, fetched))


def _save_each(
    conn: Connection, kind: DetailKind, fetched: Sequence[FetchedDetails]
) -> DetailsSaved:
    """Each job's items in a savepoint of its own: a job the database refuses is reported."""
    saved = DetailsSaved(failures=[])
    for item in fetched:
        savepoint = conn.begin_nested()
        try:
            saved.added += _save_job(conn, kind, item)
        except DBAPIError as err:
            savepoint.rollback()
            if sql.is_lock_problem(err):
                raise
            assert saved.failures is not None
            saved.failures.append(
                f"{kind} of job {shown(item.target.job_id)}: the database refused them "
                f"({sql.first_line(err)})"
            )
        else:
            savepoint.commit()
    return saved


def mark_details_synced(engine: Engine, kind: DetailKind, targets: Sequence[DetailTarget]) -> None:
    """Take these jobs' ``kind`` as fetched at their current object, with nothing new (a job
    the API no longer has: asked again only if its object changes)."""
    if not targets:
        return
    with write_transaction(engine) as conn:
        for target in targets:
            _mark(conn, kind, target)


def _save_job(conn: Connection, kind: DetailKind, item: FetchedDetails) -> int:
    table, job_pk = _tables[kind], item.target.job_pk
    added = 0
    if item.records:
        now = sql.now()
        rows = [_row(record, job_pk, now) for record in item.records]
        stmt = (
            sql.insert_for(conn, table)
            .on_conflict_do_nothing(index_elements=["job_pk", _id_columns[kind]])
            .returning(table.c.id)
        )
        added = len(conn.execute(stmt, rows).all())  # the rows not already stored
    if item.complete:
        _mark(conn, kind, item.target)
    return added


def _mark(conn: Connection, kind: DetailKind, target: DetailTarget) -> None:
    conn.execute(
        sql.jobs.update()
        .where(sql.jobs.c.id == target.job_pk)
        .values({_synced_columns[kind]: target.sha256})
    )


def _row(record: EventRecord | CheckpointRecord, job_pk: int, now: datetime) -> dict[str, Any]:
    if isinstance(record, EventRecord):
        return {
            "job_pk": job_pk,
            "event_id": record.event_id,
            "created_at": record.created_at,
            "level": record.level,
            "message": record.message,
            "type": record.type,
            "data": record.data,
            "body": record.body,
            "first_observed_at": now,
        }
    return {
        "job_pk": job_pk,
        "checkpoint_id": record.checkpoint_id,
        "created_at": record.created_at,
        "step_number": record.step_number,
        "fine_tuned_model_checkpoint": record.fine_tuned_model_checkpoint,
        "result_files": record.result_files,
        **record.metrics,
        "body": record.body,
        "first_observed_at": now,
    }
