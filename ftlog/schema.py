"""The database schema, as SQLAlchemy Core tables.

The migration chain in ``migrations/`` creates exactly these tables; a test compares the two.
The store writes through these tables alone, so a collector run never imports SQLAlchemy's
ORM (a fifth of a cron run's start-up); :mod:`ftlog.models` maps classes onto them for reading
and tests. All times are stored as UTC and come back timezone-aware, on SQLite and on
Postgres alike.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
"""Statuses after which a job does not change any more (documented by Nebius and OpenAI)."""

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite has no time zone type: values are stored as naive UTC there and get their
    ``tzinfo`` back on the way out. Naive datetimes given to ftlog are taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value if dialect.name == "sqlite" else value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _time(name: str, *, nullable: bool = False) -> Column[datetime]:
    return Column(name, UTCDateTime(), nullable=nullable)


def _json(name: str, *, nullable: bool = True) -> Column[object]:
    """JSON; Python's None is SQL NULL (not the JSON text ``null``)."""
    return Column(name, JSON(none_as_null=True), nullable=nullable)


def _id() -> Column[int]:
    return Column("id", Integer, primary_key=True)


def _job_pk() -> Column[int]:
    return Column("job_pk", ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)


# Where jobs come from: one API base URL and account, under a name the user chose.
sources = Table(
    "sources",
    metadata,
    _id(),
    Column("name", Text, nullable=False, unique=True),
    Column("base_url", Text, nullable=False),
    _time("created_at"),
    # When the latest run that paged this source's job list to completion finished: every
    # job first seen before then is known, and so is every job older than it in the list.
    _time("listed_at", nullable=True),
)

jobs = Table(
    "jobs",
    metadata,
    _id(),
    Column("source_id", ForeignKey("sources.id", ondelete="CASCADE"), nullable=False),
    Column("job_id", Text, nullable=False),
    Column("object", Text),
    Column("model", Text, index=True),
    Column("status", Text, nullable=False),
    _time("created_at"),
    _time("finished_at", nullable=True),
    Column("training_file", Text),
    Column("validation_file", Text),
    Column("suffix", Text),
    Column("seed", BigInteger),
    Column("organization_id", Text),
    Column("error_code", Text),
    Column("error_message", Text),
    Column("error_param", Text),
    Column("trained_tokens", BigInteger),
    Column("trained_steps", BigInteger),
    Column("total_steps", BigInteger),
    _time("estimated_finish", nullable=True),
    Column("fine_tuned_model", Text),
    Column("method_type", Text),
    _json("result_files"),
    _json("integrations"),
    _json("metadata"),
    _time("first_seen_at"),
    _time("last_seen_at"),
    # The hash of the latest recorded job object: an unchanged job is recognised unread.
    Column("payload_sha256", String(64), nullable=False),
    # payload_sha256 when the job's events (checkpoints) were last fetched: fetched again only
    # after the job changed, so once more after it finishes, then never.
    Column("events_synced_sha256", String(64)),
    Column("checkpoints_synced_sha256", String(64)),
    # job_id first: lookups by a page of job ids use it even before the planner has stats.
    UniqueConstraint("job_id", "source_id"),
    Index("ix_jobs_status", "status"),
    Index("ix_jobs_created_at", "created_at"),
)

hyperparameters = Table(
    "hyperparameters",
    metadata,
    Column("job_pk", ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("batch_size", BigInteger),
    Column("learning_rate", Float),
    Column("n_epochs", BigInteger),
    Column("warmup_ratio", Float),
    Column("weight_decay", Float),
    Column("lora", Boolean),
    Column("lora_r", BigInteger),
    Column("lora_alpha", BigInteger),
    Column("lora_dropout", Float),
    Column("packing", Boolean),
    Column("max_grad_norm", Float),
    Column("context_length", BigInteger),
    # Known hyperparameters whose value does not fit the column ("auto"), and unknown ones.
    _json("extra", nullable=False),
)

raw_payloads = Table(
    "raw_payloads",
    metadata,
    _id(),
    _job_pk(),
    Column("sha256", String(64), nullable=False),
    Column("body", Text, nullable=False),
    _time("first_observed_at"),
    _time("last_observed_at"),
    UniqueConstraint("job_pk", "sha256"),
    CheckConstraint("first_observed_at <= last_observed_at", name="observed_in_order"),
)

snapshots = Table(
    "snapshots",
    metadata,
    _id(),
    _job_pk(),
    Column("status", Text, nullable=False),
    Column("trained_tokens", BigInteger),
    Column("trained_steps", BigInteger),
    Column("total_steps", BigInteger),
    _time("estimated_finish", nullable=True),
    _time("first_observed_at"),
    _time("last_observed_at"),
    Column("observations", BigInteger, nullable=False),
    UniqueConstraint("job_pk", "first_observed_at"),
    Index("ix_snapshots_job_pk_last_observed_at", "job_pk", "last_observed_at"),
    CheckConstraint("first_observed_at <= last_observed_at", name="observed_in_order"),
    CheckConstraint("observations >= 1", name="observed"),
)

_FIRST_SIGHTING = text("previous_observed_at IS NULL")
status_history = Table(
    "status_history",
    metadata,
    _id(),
    _job_pk(),
    Column("from_status", Text),
    Column("to_status", Text, nullable=False),
    _time("observed_at"),
    _time("previous_observed_at", nullable=True),
    UniqueConstraint("job_pk", "observed_at"),
    UniqueConstraint("job_pk", "previous_observed_at"),
    # NULLs are distinct in a unique constraint: the first sighting needs an index of its own.
    Index(
        "uq_status_history_first_sighting",
        "job_pk",
        unique=True,
        sqlite_where=_FIRST_SIGHTING,
        postgresql_where=_FIRST_SIGHTING,
    ),
    CheckConstraint(
        "previous_observed_at IS NULL OR previous_observed_at <= observed_at",
        name="observed_after_previous",
    ),
)

collector_runs = Table(
    "collector_runs",
    metadata,
    _id(),
    Column("command", String(50), nullable=False),
    Column("source_id", ForeignKey("sources.id", ondelete="SET NULL")),
    _time("started_at"),
    _time("finished_at", nullable=True),
    Column("outcome", String(20), nullable=False),
    # The run paged the job list to its end, or to a job known finished since an earlier
    # completed listing: every job older than where it stopped is known to the store.
    Column("list_completed", Boolean, nullable=False, default=False),
    Column("requests", Integer, nullable=False, default=0),
    Column("jobs_seen", Integer, nullable=False, default=0),
    Column("jobs_changed", Integer, nullable=False, default=0),
    Column("snapshots_added", Integer, nullable=False, default=0),
    Column("status_changes", Integer, nullable=False, default=0),
    Column("errors", Integer, nullable=False, default=0),
    _json("error_details"),
    Index("ix_collector_runs_started_at", "started_at"),
    CheckConstraint(
        "outcome IN ('running', 'ok', 'partial', 'failed', 'interrupted')", name="outcome"
    ),
)

events = Table(
    "events",
    metadata,
    _id(),
    _job_pk(),
    Column("event_id", Text, nullable=False),
    _time("created_at"),
    Column("level", Text),
    Column("message", Text),
    Column("type", Text),
    _json("data"),
    Column("body", Text, nullable=False),  # the whole event object as canonical JSON
    _time("first_observed_at"),
    UniqueConstraint("job_pk", "event_id"),
    Index("ix_events_job_pk_created_at", "job_pk", "created_at"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    _id(),
    _job_pk(),
    Column("checkpoint_id", Text, nullable=False),
    _time("created_at"),
    Column("step_number", BigInteger),
    Column("fine_tuned_model_checkpoint", Text),
    _json("result_files"),
    Column("step", BigInteger),
    Column("train_loss", Float),
    Column("train_mean_token_accuracy", Float),
    Column("valid_loss", Float),
    Column("valid_mean_token_accuracy", Float),
    Column("full_valid_loss", Float),
    Column("full_valid_mean_token_accuracy", Float),
    # The whole checkpoint object as canonical JSON (metrics ftlog has no column for too).
    Column("body", Text, nullable=False),
    _time("first_observed_at"),
    UniqueConstraint("job_pk", "checkpoint_id"),
    Index("ix_checkpoints_job_pk_step_number", "job_pk", "step_number"),
)

notifications = Table(
    "notifications",
    metadata,
    _id(),
    Column("status_change_id", ForeignKey("status_history.id", ondelete="CASCADE"), nullable=False),
    # A hash of the target: a webhook URL is a secret.
    Column("channel", String(100), nullable=False),
    _time("created_at"),
    Column("attempts", Integer, nullable=False),
    _time("claimed_until", nullable=True),
    _time("delivered_at", nullable=True),
    Column("last_error", Text),
    UniqueConstraint("status_change_id", "channel"),
    Index("ix_notifications_channel_delivered_at", "channel", "delivered_at"),
    CheckConstraint("attempts >= 0", name="attempts"),
)
