"""What every part of the store shares: the tables, the dialect's INSERT, the clock."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import Insert

from ftlog import schema
from ftlog.db import write_transaction

log = logging.getLogger(__name__)
T = TypeVar("T")
DEADLOCK_RETRIES = 3

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


def is_lock_problem(err: DBAPIError) -> bool:
    """A deadlock, a serialization failure or a lock not available (Postgres)."""
    return is_retryable(err) or getattr(err.orig, "sqlstate", None) == "55P03"


def in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """``work`` in a write transaction, rerun (up to ``DEADLOCK_RETRIES`` times in all) when
    Postgres aborts it to break a deadlock with another run, or for serialization."""
    for attempt in range(1, DEADLOCK_RETRIES + 1):
        try:
            with write_transaction(engine) as conn:
                return work(conn)
        except DBAPIError as err:
            if attempt == DEADLOCK_RETRIES or not is_retryable(err):
                raise
            log.info("transaction hit a lock conflict (%s); retrying", type(err.orig).__name__)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def first_line(err: DBAPIError) -> str:
    text = str(err.orig).strip()
    return text.splitlines()[0] if text else type(err.orig).__name__


def now() -> datetime:
    return datetime.now(UTC)
