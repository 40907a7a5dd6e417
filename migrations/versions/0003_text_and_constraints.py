"""API texts as TEXT; a job's first sighting unique; the last complete listing per source;
CHECK constraints for ftlog's own vocabularies; collector_runs.transitions -> status_changes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Texts the API sends were VARCHAR(n): Postgres refused a longer value (and with it the whole
batch) while SQLite stored it. They are TEXT now on both.

On SQLite each altered table is rebuilt (alembic's batch mode); ftlog runs migrations with
foreign keys off there, so rebuilding ``jobs`` cascades nothing (see ftlog.db.upgrade).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEXTS: dict[str, dict[str, tuple[int, bool]]] = {
    "sources": {"name": (200, False), "base_url": (500, False)},
    "jobs": {
        "job_id": (200, False),
        "object": (100, True),
        "model": (300, True),
        "status": (50, False),
        "training_file": (300, True),
        "validation_file": (300, True),
        "suffix": (300, True),
        "organization_id": (200, True),
        "error_code": (200, True),
        "error_param": (200, True),
        "fine_tuned_model": (500, True),
        "method_type": (100, True),
    },
    "snapshots": {"status": (50, False)},
    "status_history": {"from_status": (50, True), "to_status": (50, False)},
    "events": {"event_id": (200, False), "level": (20, True), "type": (50, True)},
    "checkpoints": {"checkpoint_id": (200, False), "fine_tuned_model_checkpoint": (500, True)},
}
"""Per table, the columns that become TEXT: their former length and nullability."""

CHECKS: dict[str, dict[str, str]] = {
    "raw_payloads": {"observed_in_order": "first_observed_at <= last_observed_at"},
    "snapshots": {
        "observed_in_order": "first_observed_at <= last_observed_at",
        "observed": "observations >= 1",
    },
    "status_history": {
        "observed_after_previous": (
            "previous_observed_at IS NULL OR previous_observed_at <= observed_at"
        )
    },
    "collector_runs": {
        "outcome": "outcome IN ('running', 'ok', 'partial', 'failed', 'interrupted')"
    },
    "notifications": {"attempts": "attempts >= 0"},
}
FIRST_SIGHTING = "uq_status_history_first_sighting"
WHERE_FIRST = sa.text("previous_observed_at IS NULL")


def upgrade() -> None:
    # A job has one first sighting; a store written before this constraint keeps its oldest.
    op.execute(
        "DELETE FROM status_history WHERE previous_observed_at IS NULL AND id NOT IN "
        "(SELECT MIN(id) FROM status_history WHERE previous_observed_at IS NULL "
        "GROUP BY job_pk)"
    )
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("listed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE sources SET listed_at = (SELECT MAX(finished_at) FROM collector_runs "
        "WHERE collector_runs.source_id = sources.id AND collector_runs.list_completed)"
    )
    with op.batch_alter_table("collector_runs") as batch:
        batch.alter_column(
            "transitions",
            new_column_name="status_changes",
            existing_type=sa.Integer(),
            existing_nullable=False,
        )
    tables = list(dict.fromkeys([*TEXTS, *CHECKS]))
    for name in tables:
        with op.batch_alter_table(name) as batch:
            for column, (length, nullable) in TEXTS.get(name, {}).items():
                batch.alter_column(
                    column,
                    type_=sa.Text(),
                    existing_type=sa.String(length=length),
                    existing_nullable=nullable,
                )
            for check, condition in CHECKS.get(name, {}).items():
                batch.create_check_constraint(op.f(f"ck_{name}_{check}"), condition)
            if name == "status_history":
                batch.create_index(
                    FIRST_SIGHTING,
                    ["job_pk"],
                    unique=True,
                    sqlite_where=WHERE_FIRST,
                    postgresql_where=WHERE_FIRST,
                )


def downgrade() -> None:
    tables = list(dict.fromkeys([*TEXTS, *CHECKS]))
    for name in reversed(tables):
        with op.batch_alter_table(name) as batch:
            if name == "status_history":
                batch.drop_index(FIRST_SIGHTING)
            for check in CHECKS.get(name, {}):
                batch.drop_constraint(op.f(f"ck_{name}_{check}"), type_="check")
            for column, (length, nullable) in TEXTS.get(name, {}).items():
                batch.alter_column(
                    column,
                    type_=sa.String(length=length),
                    existing_type=sa.Text(),
                    existing_nullable=nullable,
                    # Postgres holds VARCHAR(n) to n: longer texts are cut, as the downgrade
                    # policy says (what a revision added goes, data included).
                    postgresql_using=f"left({column}, {length})",
                )
    with op.batch_alter_table("collector_runs") as batch:
        batch.alter_column(
            "status_changes",
            new_column_name="transitions",
            existing_type=sa.Integer(),
            existing_nullable=False,
        )
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("listed_at")
