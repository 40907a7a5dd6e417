"""What every part of the store shares: the tables, the dialect's INSERT, the clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert

from ftlog import schema

jobs = schema.jobs
hyperparameters = schema.hyperparameters
payloads = schema.raw_payloads
snapshots = schema.snapshots
history = schema.status_history
runs = schema.collector_runs
sources = schema.sources
notifications = schema.notifications
events = schema.events
checkpoints = schema.checkpoints


def insert_for(conn: Connection, target: Table) -> Any:
    """The dialect's INSERT, which has on_conflict_do_nothing / on_conflict_do_update."""
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt: Insert = dialect_insert(target)
    return stmt


def is_retryable(err: DBAPIError) -> bool:
    """A deadlock or serialization failure (Postgres): the transaction may simply be rerun."""
    return getattr(err.orig, "sqlstate", None) in {"40P01", "40001"}


def first_line(err: DBAPIError) -> str:
    text = str(err.orig).strip()
    return text.splitlines()[0] if text else type(err.orig).__name__


def now() -> datetime:
    return datetime.now(UTC)
