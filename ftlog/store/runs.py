"""Sources (where jobs come from) and collector runs (what each run did)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Engine, select

from ftlog.db import write_transaction
from ftlog.store import _sql as sql

log = logging.getLogger(__name__)

Outcome = Literal["running", "ok", "partial", "failed", "interrupted"]
"""A run's outcome: still running (or killed before it could say otherwise), everything
recorded, some jobs or requests failed, the run could not go on, stopped by a signal."""


@dataclass(frozen=True, slots=True)
class RunCounts:
    """What a finished run did, as its ``collector_runs`` row records it."""

    outcome: Outcome
    requests: int = 0
    jobs_seen: int = 0
    jobs_changed: int = 0
    snapshots_added: int = 0
    status_changes: int = 0
    errors: Sequence[str] = ()
    list_completed: bool = False


def ensure_source(engine: Engine, name: str, base_url: str) -> int:
    """The id of the source called ``name``, created if new. Its base URL is kept current."""
    with write_transaction(engine) as conn:
        stmt = sql.insert_for(conn, sql.sources).values(
            name=name, base_url=base_url, created_at=sql.now()
        )
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["name"]))
        pk, stored_url = conn.execute(
            select(sql.sources.c.id, sql.sources.c.base_url).where(sql.sources.c.name == name)
        ).one()
        if stored_url != base_url:
            log.info("source %s: base URL changed to %s", name, base_url)
            conn.execute(
                sql.sources.update().where(sql.sources.c.id == pk).values(base_url=base_url)
            )
    return int(pk)


def start_run(engine: Engine, command: str, source_id: int | None) -> int:
    """A ``collector_runs`` row for a run that starts now (outcome ``running``)."""
    with write_transaction(engine) as conn:
        pk = conn.execute(
            sql.runs.insert()
            .values(
                command=command,
                source_id=source_id,
                started_at=sql.now(),
                outcome="running",
                list_completed=False,
                requests=0,
                jobs_seen=0,
                jobs_changed=0,
                snapshots_added=0,
                status_changes=0,
                errors=0,
            )
            .returning(sql.runs.c.id)
        ).scalar_one()
    return int(pk)


def finish_run(engine: Engine, run_id: int, counts: RunCounts) -> None:
    """Record the end of a run; a run that listed its source's jobs to completion moves the
    source's ``listed_at`` (see :func:`last_complete_listing`)."""
    finished = sql.now()
    with write_transaction(engine) as conn:
        source_id = conn.execute(
            sql.runs.update()
            .where(sql.runs.c.id == run_id)
            .values(
                finished_at=finished,
                outcome=counts.outcome,
                list_completed=counts.list_completed,
                requests=counts.requests,
                jobs_seen=counts.jobs_seen,
                jobs_changed=counts.jobs_changed,
                snapshots_added=counts.snapshots_added,
                status_changes=counts.status_changes,
                errors=len(counts.errors),
                error_details=list(counts.errors) or None,
            )
            .returning(sql.runs.c.source_id)
        ).scalar_one()
        if counts.list_completed and source_id is not None:
            conn.execute(
                sql.sources.update().where(sql.sources.c.id == source_id).values(listed_at=finished)
            )


def last_complete_listing(engine: Engine, source_id: int) -> datetime | None:
    """When the latest run that paged the source's job list to completion finished, if any
    did (kept on the source, so every cron run reads one row)."""
    with engine.connect() as conn:
        listed: datetime | None = conn.execute(
            select(sql.sources.c.listed_at).where(sql.sources.c.id == source_id)
        ).scalar_one_or_none()
    return listed
