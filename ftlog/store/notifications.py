"""The notification outbox: status changes queued per channel, claimed, marked delivered.

Rows are queued by :func:`ftlog.store.save_observations` in the transaction that records the
status change. A sender claims rows for a while (a lease) before delivering them, so that
overlapping runs do not both send one; a failed delivery stays queued for the next run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, or_, select

from ftlog.db import write_transaction
from ftlog.store import _sql as sql
from ftlog.store.jobs import StatusChange

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 20
"""After this many failed deliveries a notification is given up (it stays in the table)."""


def claim_notifications(engine: Engine, channel: str) -> list[tuple[int, StatusChange]]:
    """Take the lease on this channel's queued notifications that nobody else holds, oldest
    status change first; returns each row's id and what it says."""
    now = sql.now()
    n, h, j = sql.notifications.c, sql.history.c, sql.jobs.c
    with write_transaction(engine) as conn:
        query = (
            select(
                n.id,
                j.job_id,
                h.from_status,
                h.to_status,
                h.observed_at,
                j.model,
                j.error_message,
                sql.sources.c.name,
            )
            .join(sql.history, h.id == n.status_change_id)
            .join(sql.jobs, j.id == h.job_pk)
            .join(sql.sources, sql.sources.c.id == j.source_id)
            .where(
                n.channel == channel,
                n.delivered_at.is_(None),
                n.attempts < MAX_ATTEMPTS,
                or_(n.claimed_until.is_(None), n.claimed_until < now),
            )
            .order_by(h.observed_at, n.id)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=sql.notifications, skip_locked=True)
        rows = conn.execute(query).all()
        if rows:
            conn.execute(
                sql.notifications.update()
                .where(n.id.in_([row.id for row in rows]))
                .values(claimed_until=now + LEASE)
            )
    return [(row.id, StatusChange(*row[1:])) for row in rows]


def finish_notification(engine: Engine, row_id: int, error: str | None) -> None:
    """Mark a claimed notification delivered (``error`` None) or failed, releasing it."""
    n = sql.notifications.c
    values: dict[str, Any] = {"attempts": n.attempts + 1, "claimed_until": None}
    if error is None:
        values["delivered_at"] = sql.now()
        values["last_error"] = None
    else:
        values["last_error"] = error[:1000]
    with write_transaction(engine) as conn:
        conn.execute(sql.notifications.update().where(n.id == row_id).values(values))


def release_notifications(engine: Engine, row_ids: list[int]) -> None:
    """Give claimed notifications back unsent (the run's time for deliveries ran out)."""
    if not row_ids:
        return
    n = sql.notifications.c
    with write_transaction(engine) as conn:
        conn.execute(sql.notifications.update().where(n.id.in_(row_ids)).values(claimed_until=None))
