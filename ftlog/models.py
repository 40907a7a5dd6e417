"""The database schema: SQLAlchemy 2.0 typed models.

The migration chain in ``migrations/`` creates exactly these tables; a test compares the two.
All times are stored as UTC and come back timezone-aware, on SQLite and on Postgres alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
"""Statuses after which a job does not change any more (documented by Nebius and OpenAI)."""


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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


def table(model: type[Base]) -> Table:
    """A model's Core table, typed as one (declarative types ``__table__`` as a FromClause)."""
    return cast(Table, model.__table__)


class Source(Base):
    """Where jobs come from: one API base URL and account, under a name chosen by the user."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    base_url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    listed_at: Mapped[datetime | None]
    """When the latest run that paged this source's job list to completion finished: every
    job first seen before then is known, and so is every job older than it in the list."""


class Job(Base):
    """One job of one source, with the latest known fields of its job object."""

    __tablename__ = "jobs"
    __table_args__ = (
        # job_id first: lookups by a page of job ids use it even before the planner has stats.
        UniqueConstraint("job_id", "source_id"),
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    job_id: Mapped[str] = mapped_column(Text)
    object: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Text, index=True)
    status: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    training_file: Mapped[str | None] = mapped_column(Text)
    validation_file: Mapped[str | None] = mapped_column(Text)
    suffix: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    organization_id: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    error_param: Mapped[str | None] = mapped_column(Text)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger)
    trained_steps: Mapped[int | None] = mapped_column(BigInteger)
    total_steps: Mapped[int | None] = mapped_column(BigInteger)
    estimated_finish: Mapped[datetime | None]
    fine_tuned_model: Mapped[str | None] = mapped_column(Text)
    method_type: Mapped[str | None] = mapped_column(Text)
    result_files: Mapped[list[Any] | None]
    integrations: Mapped[list[Any] | None]
    job_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    payload_sha256: Mapped[str] = mapped_column(String(64))
    """Hash of the latest recorded job object: an unchanged job is recognised without reading it."""
    events_synced_sha256: Mapped[str | None] = mapped_column(String(64))
    """``payload_sha256`` when the job's events were last fetched: they are fetched again only
    after the job changed (so once more after it finishes, then never)."""
    checkpoints_synced_sha256: Mapped[str | None] = mapped_column(String(64))


class Hyperparameters(Base):
    """The job's latest hyperparameters.

    Known ones have typed columns. A known one whose value does not fit its type (OpenAI's
    ``"auto"``, say) is NULL in its column and kept under its name in ``extra``, beside every
    hyperparameter ftlog does not know yet; so nothing the API said is dropped or coerced.
    """

    __tablename__ = "hyperparameters"

    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    batch_size: Mapped[int | None] = mapped_column(BigInteger)
    learning_rate: Mapped[float | None] = mapped_column(Float)
    n_epochs: Mapped[int | None] = mapped_column(BigInteger)
    warmup_ratio: Mapped[float | None] = mapped_column(Float)
    weight_decay: Mapped[float | None] = mapped_column(Float)
    lora: Mapped[bool | None] = mapped_column(Boolean)
    lora_r: Mapped[int | None] = mapped_column(BigInteger)
    lora_alpha: Mapped[int | None] = mapped_column(BigInteger)
    lora_dropout: Mapped[float | None] = mapped_column(Float)
    packing: Mapped[bool | None] = mapped_column(Boolean)
    max_grad_norm: Mapped[float | None] = mapped_column(Float)
    context_length: Mapped[int | None] = mapped_column(BigInteger)
    extra: Mapped[dict[str, Any]]


class RawPayload(Base):
    """Each distinct job object the API returned, kept whole (canonical JSON)."""

    __tablename__ = "raw_payloads"
    __table_args__ = (
        UniqueConstraint("job_pk", "sha256"),
        CheckConstraint("first_observed_at <= last_observed_at", name="observed_in_order"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    first_observed_at: Mapped[datetime]
    last_observed_at: Mapped[datetime]


class Snapshot(Base):
    """One distinct observed state of a job, from the first to the last time it was seen."""

    __tablename__ = "snapshots"
    __table_args__ = (
        UniqueConstraint("job_pk", "first_observed_at"),
        Index("ix_snapshots_job_pk_last_observed_at", "job_pk", "last_observed_at"),
        CheckConstraint("first_observed_at <= last_observed_at", name="observed_in_order"),
        CheckConstraint("observations >= 1", name="observed"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(Text)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger)
    trained_steps: Mapped[int | None] = mapped_column(BigInteger)
    total_steps: Mapped[int | None] = mapped_column(BigInteger)
    estimated_finish: Mapped[datetime | None]
    first_observed_at: Mapped[datetime]
    last_observed_at: Mapped[datetime]
    observations: Mapped[int] = mapped_column(BigInteger)


class StatusChangeRow(Base):
    """A row of the status history: one status change, known to have happened between two
    observations.

    ``from_status`` is NULL when the job was first seen (already in ``to_status``). It happened
    after ``previous_observed_at`` (NULL when first seen) and no later than ``observed_at``.
    A job has one first sighting, and one change per observation and per previous observation
    (NULLs are distinct in a unique constraint, hence the partial index for the first).
    """

    __tablename__ = "status_history"
    __table_args__ = (
        UniqueConstraint("job_pk", "observed_at"),
        UniqueConstraint("job_pk", "previous_observed_at"),
        Index(
            "uq_status_history_first_sighting",
            "job_pk",
            unique=True,
            sqlite_where=text("previous_observed_at IS NULL"),
            postgresql_where=text("previous_observed_at IS NULL"),
        ),
        CheckConstraint(
            "previous_observed_at IS NULL OR previous_observed_at < observed_at",
            name="observed_after_previous",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(Text)
    to_status: Mapped[str] = mapped_column(Text)
    observed_at: Mapped[datetime]
    previous_observed_at: Mapped[datetime | None]


class CollectorRun(Base):
    """One run of ``ftlog snapshot``, ``ingest`` or ``watch`` (one row per pass)."""

    __tablename__ = "collector_runs"
    __table_args__ = (
        Index("ix_collector_runs_started_at", "started_at"),
        CheckConstraint(
            "outcome IN ('running', 'ok', 'partial', 'failed', 'interrupted')", name="outcome"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    command: Mapped[str] = mapped_column(String(50))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id", ondelete="SET NULL"))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(20))
    """running (or killed before it could say otherwise), ok, partial (some jobs failed),
    failed (the run could not go on), interrupted (stopped by a signal)."""
    list_completed: Mapped[bool] = mapped_column(Boolean, default=False)
    """The run paged the job list to its end or to a job known finished since an earlier
    completed listing: every job older than where it stopped is known to the store."""
    requests: Mapped[int] = mapped_column(Integer, default=0)
    jobs_seen: Mapped[int] = mapped_column(Integer, default=0)
    jobs_changed: Mapped[int] = mapped_column(Integer, default=0)
    snapshots_added: Mapped[int] = mapped_column(Integer, default=0)
    status_changes: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    error_details: Mapped[list[Any] | None]


class Event(Base):
    """One event of a job's event log (``GET /fine_tuning/jobs/{id}/events``), stored once."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("job_pk", "event_id"),
        Index("ix_events_job_pk_created_at", "job_pk", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    level: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    body: Mapped[str] = mapped_column(Text)
    """The whole event object as canonical JSON."""
    first_observed_at: Mapped[datetime]


class Checkpoint(Base):
    """One checkpoint of a job, with its metrics (the loss curve is made of these)."""

    __tablename__ = "checkpoints"
    __table_args__ = (
        UniqueConstraint("job_pk", "checkpoint_id"),
        Index("ix_checkpoints_job_pk_step_number", "job_pk", "step_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    job_pk: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    checkpoint_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    step_number: Mapped[int | None] = mapped_column(BigInteger)
    fine_tuned_model_checkpoint: Mapped[str | None] = mapped_column(Text)
    result_files: Mapped[list[Any] | None]
    step: Mapped[int | None] = mapped_column(BigInteger)
    train_loss: Mapped[float | None] = mapped_column(Float)
    train_mean_token_accuracy: Mapped[float | None] = mapped_column(Float)
    valid_loss: Mapped[float | None] = mapped_column(Float)
    valid_mean_token_accuracy: Mapped[float | None] = mapped_column(Float)
    full_valid_loss: Mapped[float | None] = mapped_column(Float)
    full_valid_mean_token_accuracy: Mapped[float | None] = mapped_column(Float)
    body: Mapped[str] = mapped_column(Text)
    """The whole checkpoint object as canonical JSON (metrics ftlog has no column for too)."""
    first_observed_at: Mapped[datetime]


class Notification(Base):
    """A status transition to be told to one channel (a command or a webhook).

    One row per transition and channel makes a notification go out once, even when runs
    overlap; a sender claims a row (``claimed_until``) before delivering it, and a failed
    delivery stays pending for the next run. ``channel`` is a hash of the target, because
    a webhook URL is a secret.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("status_change_id", "channel"),
        Index("ix_notifications_channel_delivered_at", "channel", "delivered_at"),
        CheckConstraint("attempts >= 0", name="attempts"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    status_change_id: Mapped[int] = mapped_column(
        ForeignKey("status_history.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer)
    claimed_until: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
