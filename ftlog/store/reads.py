"""The few reads the collector needs to decide what to fetch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from ftlog.schema import TERMINAL_STATUSES
from ftlog.store import _sql as sql


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
    j = sql.jobs.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(j.job_id, j.status, j.payload_sha256, j.first_seen_at).where(
                j.source_id == source_id, j.job_id.in_(ids)
            )
        )
        return {
            row.job_id: StoredJob(row.status, row.payload_sha256, row.first_seen_at) for row in rows
        }


def unfinished_job_ids(engine: Engine, source_id: int) -> list[str]:
    """Jobs of the source whose last recorded status is not terminal, newest first."""
    j = sql.jobs.c
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(j.job_id)
                .where(j.source_id == source_id, j.status.not_in(TERMINAL_STATUSES))
                .order_by(j.created_at.desc(), j.job_id)
            ).scalars()
        )


def refresh_statistics(engine: Engine) -> None:
    """Let Postgres's planner see how big the tables have grown (ANALYZE, as after any bulk
    load). A new store has no statistics until autovacuum runs, and the planner then takes
    the jobs table for empty and scans it for every page, so a first sync slows as it grows.
    SQLite needs nothing of the kind."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE jobs, snapshots, status_history, raw_payloads")
