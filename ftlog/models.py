"""ORM classes mapped onto the schema's tables (:mod:`ftlog.schema`), for reading and tests.

The store writes through the Core tables and never imports this module; every other reader
may use either. ``Mapped`` annotations type the attributes; the columns themselves are the
schema's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.orm import DeclarativeBase, Mapped

from ftlog import schema
from ftlog.schema import TERMINAL_STATUSES, UTCDateTime

__all__ = [
    "TERMINAL_STATUSES",
    "Base",
    "Checkpoint",
    "CollectorRun",
    "Event",
    "Hyperparameters",
    "Job",
    "Notification",
    "RawPayload",
    "Snapshot",
    "Source",
    "StatusChangeRow",
    "UTCDateTime",
    "table",
]


class Base(DeclarativeBase):
    metadata = schema.metadata


def table(model: type[Base]) -> Table:
    """A model's Core table, typed as one (declarative types ``__table__`` as a FromClause)."""
    return cast(Table, model.__table__)


class Source(Base):
    """Where jobs come from: one API base URL and account, under a name chosen by the user."""

    __table__ = schema.sources
    id: Mapped[int]
    name: Mapped[str]
    base_url: Mapped[str]
    created_at: Mapped[datetime]
    listed_at: Mapped[datetime | None]


class Job(Base):
    """One job of one source, with the latest known fields of its job object."""

    __table__ = schema.jobs
    __mapper_args__ = {"properties": {"job_metadata": schema.jobs.c.metadata}}  # noqa: RUF012
    id: Mapped[int]
    source_id: Mapped[int]
    job_id: Mapped[str]
    object: Mapped[str | None]
    model: Mapped[str | None]
    status: Mapped[str]
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    training_file: Mapped[str | None]
    validation_file: Mapped[str | None]
    suffix: Mapped[str | None]
    seed: Mapped[int | None]
    organization_id: Mapped[str | None]
    error_code: Mapped[str | None]
    error_message: Mapped[str | None]
    error_param: Mapped[str | None]
    trained_tokens: Mapped[int | None]
    trained_steps: Mapped[int | None]
    total_steps: Mapped[int | None]
    estimated_finish: Mapped[datetime | None]
    fine_tuned_model: Mapped[str | None]
    method_type: Mapped[str | None]
    result_files: Mapped[list[Any] | None]
    integrations: Mapped[list[Any] | None]
    job_metadata: Mapped[dict[str, Any] | None]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    payload_sha256: Mapped[str]
    events_synced_sha256: Mapped[str | None]
    checkpoints_synced_sha256: Mapped[str | None]


class Hyperparameters(Base):
    """The job's latest hyperparameters.

    Known ones have typed columns. A known one whose value does not fit its type (OpenAI's
    ``"auto"``, say) is NULL in its column and kept under its name in ``extra``, beside every
    hyperparameter ftlog does not know yet; so nothing the API said is dropped or coerced.
    """

    __table__ = schema.hyperparameters
    job_pk: Mapped[int]
    batch_size: Mapped[int | None]
    learning_rate: Mapped[float | None]
    n_epochs: Mapped[int | None]
    warmup_ratio: Mapped[float | None]
    weight_decay: Mapped[float | None]
    lora: Mapped[bool | None]
    lora_r: Mapped[int | None]
    lora_alpha: Mapped[int | None]
    lora_dropout: Mapped[float | None]
    packing: Mapped[bool | None]
    max_grad_norm: Mapped[float | None]
    context_length: Mapped[int | None]
    extra: Mapped[dict[str, Any]]


class RawPayload(Base):
    """Each distinct job object the API returned, kept whole (canonical JSON)."""

    __table__ = schema.raw_payloads
    id: Mapped[int]
    job_pk: Mapped[int]
    sha256: Mapped[str]
    body: Mapped[str]
    first_observed_at: Mapped[datetime]
    last_observed_at: Mapped[datetime]


class Snapshot(Base):
    """One distinct observed state of a job, from the first to the last time it was seen."""

    __table__ = schema.snapshots
    id: Mapped[int]
    job_pk: Mapped[int]
    status: Mapped[str]
    trained_tokens: Mapped[int | None]
    trained_steps: Mapped[int | None]
    total_steps: Mapped[int | None]
    estimated_finish: Mapped[datetime | None]
    first_observed_at: Mapped[datetime]
    last_observed_at: Mapped[datetime]
    observations: Mapped[int]


class StatusChangeRow(Base):
    """A row of the status history: one status change, known to have happened between two
    observations.

    ``from_status`` is NULL when the job was first seen (already in ``to_status``). It happened
    after ``previous_observed_at`` (NULL when first seen) and no later than ``observed_at``.
    """

    __table__ = schema.status_history
    id: Mapped[int]
    job_pk: Mapped[int]
    from_status: Mapped[str | None]
    to_status: Mapped[str]
    observed_at: Mapped[datetime]
    previous_observed_at: Mapped[datetime | None]


class CollectorRun(Base):
    """One run of ``ftlog snapshot``, ``ingest`` or ``watch`` (one row per pass); ``outcome``
    is running (or killed before it could say otherwise), ok, partial (some jobs failed),
    failed (the run could not go on) or interrupted (stopped by a signal)."""

    __table__ = schema.collector_runs
    id: Mapped[int]
    command: Mapped[str]
    source_id: Mapped[int | None]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str]
    list_completed: Mapped[bool]
    requests: Mapped[int]
    jobs_seen: Mapped[int]
    jobs_changed: Mapped[int]
    snapshots_added: Mapped[int]
    status_changes: Mapped[int]
    errors: Mapped[int]
    error_details: Mapped[list[Any] | None]


class Event(Base):
    """One event of a job's event log (``GET /fine_tuning/jobs/{id}/events``), stored once."""

    __table__ = schema.events
    id: Mapped[int]
    job_pk: Mapped[int]
    event_id: Mapped[str]
    created_at: Mapped[datetime]
    level: Mapped[str | None]
    message: Mapped[str | None]
    type: Mapped[str | None]
    data: Mapped[dict[str, Any] | None]
    body: Mapped[str]
    first_observed_at: Mapped[datetime]


class Checkpoint(Base):
    """One checkpoint of a job, with its metrics (the loss curve is made of these)."""

    __table__ = schema.checkpoints
    id: Mapped[int]
    job_pk: Mapped[int]
    checkpoint_id: Mapped[str]
    created_at: Mapped[datetime]
    step_number: Mapped[int | None]
    fine_tuned_model_checkpoint: Mapped[str | None]
    result_files: Mapped[list[Any] | None]
    step: Mapped[int | None]
    train_loss: Mapped[float | None]
    train_mean_token_accuracy: Mapped[float | None]
    valid_loss: Mapped[float | None]
    valid_mean_token_accuracy: Mapped[float | None]
    full_valid_loss: Mapped[float | None]
    full_valid_mean_token_accuracy: Mapped[float | None]
    body: Mapped[str]
    first_observed_at: Mapped[datetime]


class Notification(Base):
    """A status change to be told to one channel (a command or a webhook), once: a sender
    claims the row (``claimed_until``) before delivering it; a failed delivery stays pending
    for the next run. ``channel`` is a hash of the target (a webhook URL is a secret)."""

    __table__ = schema.notifications
    id: Mapped[int]
    status_change_id: Mapped[int]
    channel: Mapped[str]
    created_at: Mapped[datetime]
    attempts: Mapped[int]
    claimed_until: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None]
