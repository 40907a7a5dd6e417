"""Events and checkpoints of jobs: fetched only for jobs that changed, each stored once.

A job's details are fetched when its object changed since they were last fetched (so while
it trains, and once more after it finishes), and only what is newer than the newest stored
item (the API lists newest first; the client stops at the first item already known).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Engine, Table, or_, select

from ftlog.client import FineTuningClient
from ftlog.db import write_transaction
from ftlog.errors import APIError, NotFound, PayloadError
from ftlog.models import Checkpoint, Event, Job, table
from ftlog.parse import CheckpointRecord, EventRecord, parse_checkpoint, parse_event
from ftlog.store import insert_for

log = logging.getLogger(__name__)

Kind = Literal["events", "checkpoints"]

PAGE_SIZE = 100

_jobs = table(Job)
_tables: dict[Kind, Table] = {
    "events": table(Event),
    "checkpoints": table(Checkpoint),
}
_id_columns: dict[Kind, str] = {"events": "event_id", "checkpoints": "checkpoint_id"}
_synced_columns: dict[Kind, str] = {
    "events": "events_synced_sha256",
    "checkpoints": "checkpoints_synced_sha256",
}


@dataclass(slots=True)
class DetailsResult:
    added: dict[str, int] = field(default_factory=lambda: {"events": 0, "checkpoints": 0})
    errors: list[str] = field(default_factory=list)
    missing_endpoints: list[str] = field(default_factory=list)
    """Kinds the API answered 404 for: not asked again in this run."""


def collect_details(
    engine: Engine, client: FineTuningClient, source_id: int, kinds: Sequence[Kind]
) -> DetailsResult:
    """Fetch and store the new events/checkpoints of every job of the source that changed
    since its details were last fetched. Failures are reported per job; the job is retried
    on the next run (its marker is not moved)."""
    result = DetailsResult()
    for kind in kinds:
        for job_pk, job_id, sha in _jobs_needing(engine, source_id, kind):
            try:
                added = _sync_job(engine, client, kind, job_pk, job_id, sha)
            except NotFound:
                log.warning(
                    "the API has no %s for job %s (HTTP 404); not asking again in this run",
                    kind,
                    job_id,
                )
                result.missing_endpoints.append(kind)
                break
            except (APIError, PayloadError) as err:
                result.errors.append(f"{kind} of job {job_id}: {err}")
                log.error("%s", result.errors[-1])
                continue
            result.added[kind] += added
    return result


def _jobs_needing(engine: Engine, source_id: int, kind: Kind) -> list[tuple[int, str, str]]:
    synced = _jobs.c[_synced_columns[kind]]
    with engine.connect() as conn:
        rows = conn.execute(
            select(_jobs.c.id, _jobs.c.job_id, _jobs.c.payload_sha256)
            .where(
                _jobs.c.source_id == source_id,
                or_(synced.is_(None), synced != _jobs.c.payload_sha256),
            )
            .order_by(_jobs.c.created_at.desc())
        ).all()
    return [(row.id, row.job_id, row.payload_sha256) for row in rows]


def _sync_job(
    engine: Engine, client: FineTuningClient, kind: Kind, job_pk: int, job_id: str, sha: str
) -> int:
    table = _tables[kind]
    newest_id, newest_at = _newest_stored(engine, table, _id_columns[kind], job_pk)
    fetch: Callable[..., Any] = (
        client.iter_new_events if kind == "events" else client.iter_new_checkpoints
    )
    items = list(fetch(job_id, newest_id, newest_at, limit=PAGE_SIZE))
    parse = parse_event if kind == "events" else parse_checkpoint
    records = [parse(item, job_id) for item in items]
    return _save(engine, kind, job_pk, records, sha)


def _newest_stored(
    engine: Engine, table: Table, id_column: str, job_pk: int
) -> tuple[str | None, float | None]:
    with engine.connect() as conn:
        row = conn.execute(
            select(table.c[id_column], table.c.created_at)
            .where(table.c.job_pk == job_pk)
            .order_by(table.c.created_at.desc(), table.c.id.desc())
            .limit(1)
        ).first()
    return (None, None) if row is None else (row[0], row[1].timestamp())


def _save(
    engine: Engine,
    kind: Kind,
    job_pk: int,
    records: Sequence[EventRecord | CheckpointRecord],
    sha: str,
) -> int:
    """Store the records once each, and mark the job's details fetched at object ``sha``."""
    now = datetime.now(UTC)
    table = _tables[kind]
    rows = [_row(record, job_pk, now) for record in records]
    with write_transaction(engine) as conn:
        added = 0
        if rows:
            stmt = (
                insert_for(conn, table)
                .on_conflict_do_nothing(index_elements=["job_pk", _id_columns[kind]])
                .returning(table.c.id)
            )
            added = len(conn.execute(stmt, rows).all())  # the rows not already stored
        conn.execute(
            _jobs.update().where(_jobs.c.id == job_pk).values({_synced_columns[kind]: sha})
        )
    return added


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
