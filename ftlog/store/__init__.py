"""The store layer: every write to the database, and the reads the collector needs.

Callers hand in parsed records (:mod:`ftlog.parse`) and get plain results back; rows,
sessions and column names stay in here. The modules, by what they own:
:mod:`~ftlog.store.jobs` (jobs, hyperparameters, raw payloads, snapshots, the status
history), :mod:`~ftlog.store.details` (events, checkpoints), :mod:`~ftlog.store.notifications`
(the outbox), :mod:`~ftlog.store.runs` (sources, collector runs) and
:mod:`~ftlog.store.reads`.
"""

from __future__ import annotations

from ftlog.store.details import (
    DETAIL_KINDS,
    DetailKind,
    DetailsSaved,
    DetailTarget,
    FetchedDetails,
    jobs_needing_details,
    mark_details_synced,
    save_details,
)
from ftlog.store.jobs import JobFailure, Observation, SaveResult, StatusChange, save_observations
from ftlog.store.notifications import (
    claim_notifications,
    finish_notification,
    release_notifications,
)
from ftlog.store.reads import StoredJob, refresh_statistics, stored_jobs, unfinished_job_ids
from ftlog.store.runs import (
    Outcome,
    RunCounts,
    ensure_source,
    finish_run,
    last_complete_listing,
    start_run,
)

__all__ = [
    "DETAIL_KINDS",
    "DetailKind",
    "DetailTarget",
    "DetailsSaved",
    "FetchedDetails",
    "JobFailure",
    "Observation",
    "Outcome",
    "RunCounts",
    "SaveResult",
    "StatusChange",
    "StoredJob",
    "claim_notifications",
    "ensure_source",
    "finish_notification",
    "finish_run",
    "jobs_needing_details",
    "last_complete_listing",
    "mark_details_synced",
    "refresh_statistics",
    "release_notifications",
    "save_details",
    "save_observations",
    "start_run",
    "stored_jobs",
    "unfinished_job_ids",
]
