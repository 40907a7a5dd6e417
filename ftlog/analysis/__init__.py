"""The recorded history as pandas DataFrames: the public analysis API of ftlog.

Every function takes ``store``: a database URL or SQLite path (opened, its schema checked or
created, and closed again), an ``Engine`` (used as it is), or None for the default store
(``FTLOG_DATABASE_URL``, else the SQLite file in the user data directory).

**Filters** (keyword arguments; every one narrows, all are combined with AND, and they are
applied in SQL, on the ``jobs`` and ``sources`` tables):

- ``job_ids``: job ids (an iterable of str; a single str is one id);
- ``source``: the source's name; ``model``: the base model, exactly;
- ``status``: the job's latest status, one (str) or any of several (iterable);
- ``since`` / ``until``: jobs **created** (the API's ``created_at``) in ``[since, until)``;
  a datetime or ISO 8601 string, naive meaning UTC. All rows of a selected job are returned,
  whenever they were observed.

Unknown job ids give empty frames. :func:`select_jobs` and the comparisons
(:func:`compare_jobs`, :func:`compare_hyperparameters`, :func:`compare_by`) take unique id
*prefixes* too, and raise UsageProblem for an unknown id or an ambiguous prefix
(:mod:`~ftlog.analysis.selection`).

**Frames** are tidy, one row per record, and name their job in ``source`` and ``job_id`` (a job
id is unique within a source); their columns, in order, are the keys of the ``*_COLUMNS``
constants (name → kind; ``DTYPES`` maps a kind to its dtype). Times are
``datetime64[us, UTC]``; integers ``Int64``, other numbers ``Float64``, flags ``boolean``, text
``string`` (missing values are ``pd.NA``/``NaT``); durations are ``Float64`` seconds (``*_s``).
Rows come job by job (jobs ordered by ``created_at``, then source and job id), and in time
order within a job (loss curves: in step order).

**Transition times.** ftlog polls: a status change recorded at ``observed_at`` happened in
``(previous_observed_at, observed_at]``. Its *estimate* is the midpoint of that interval and its
*uncertainty* (``±``) half its length. On a job's first sighting (``from_status`` null) the
status was entered at or before ``observed_at``: the estimate is ``observed_at``, an upper
bound, and the uncertainty is unknown (NA); durations from it are lower bounds.

The modules, by concern: :mod:`~ftlog.analysis.history` (jobs, hyperparameters, snapshots,
status changes), :mod:`~ftlog.analysis.speed` (throughput), :mod:`~ftlog.analysis.training`
(events, checkpoints, loss curves), :mod:`~ftlog.analysis.cost` (price estimates),
:mod:`~ftlog.analysis.runs` (one row per job: the frame to group and plot),
:mod:`~ftlog.analysis.compare`, :mod:`~ftlog.analysis.trends` (queue and run times by
day or week), :mod:`~ftlog.analysis.selection` (jobs by id or prefix);
everything public is importable from ``ftlog.analysis``.
"""

from __future__ import annotations

from ftlog.analysis._read import DTYPES, JOB_COLUMNS, Filters, StoreLike
from ftlog.analysis.compare import (
    COMPARE_BY_COLUMNS,
    COMPARE_OUTCOMES,
    compare_by,
    compare_hyperparameters,
    compare_jobs,
)
from ftlog.analysis.cost import (
    COST_GROUPS,
    COST_TOTAL_COLUMNS,
    CostGroup,
    cost_totals,
    currency_totals,
)
from ftlog.analysis.history import (
    HYPERPARAMETER_COLUMNS,
    HYPERPARAMETER_NAMES,
    SNAPSHOT_COLUMNS,
    STATUS_DURATION_COLUMNS,
    STATUS_HISTORY_COLUMNS,
    load_hyperparameters,
    load_jobs,
    load_snapshots,
    load_status_history,
    status_durations,
)
from ftlog.analysis.runs import RUN_COLUMNS, runs
from ftlog.analysis.selection import select_jobs
from ftlog.analysis.speed import (
    SUMMARY_COLUMNS,
    THROUGHPUT_COLUMNS,
    throughput,
    throughput_summary,
)
from ftlog.analysis.training import (
    CHECKPOINT_COLUMNS,
    EVENT_COLUMNS,
    LOSS_CURVE_COLUMNS,
    LOSS_METRICS,
    LOSS_OUTCOMES,
    checkpoints,
    events,
    load_checkpoints,
    load_events,
    loss_curves,
)
from ftlog.analysis.trends import PERIODS, TREND_COLUMNS, Period, trends

__all__ = [
    "CHECKPOINT_COLUMNS",
    "COMPARE_BY_COLUMNS",
    "COMPARE_OUTCOMES",
    "COST_GROUPS",
    "COST_TOTAL_COLUMNS",
    "DTYPES",
    "EVENT_COLUMNS",
    "HYPERPARAMETER_COLUMNS",
    "HYPERPARAMETER_NAMES",
    "JOB_COLUMNS",
    "LOSS_CURVE_COLUMNS",
    "LOSS_METRICS",
    "LOSS_OUTCOMES",
    "PERIODS",
    "RUN_COLUMNS",
    "SNAPSHOT_COLUMNS",
    "STATUS_DURATION_COLUMNS",
    "STATUS_HISTORY_COLUMNS",
    "SUMMARY_COLUMNS",
    "THROUGHPUT_COLUMNS",
    "TREND_COLUMNS",
    "CostGroup",
    "Filters",
    "Period",
    "StoreLike",
    "checkpoints",
    "compare_by",
    "compare_hyperparameters",
    "compare_jobs",
    "cost_totals",
    "currency_totals",
    "events",
    "load_checkpoints",
    "load_events",
    "load_hyperparameters",
    "load_jobs",
    "load_snapshots",
    "load_status_history",
    "loss_curves",
    "runs",
    "select_jobs",
    "status_durations",
    "throughput",
    "throughput_summary",
    "trends",
]
