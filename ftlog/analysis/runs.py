"""The runs table: one row per job, its hyperparameters and what came of it.

The frame a notebook groups, filters and plots (``runs.groupby("learning_rate")``). Every
figure comes from the functions that define it, never recomputed here: speeds and timings
from :func:`~ftlog.analysis.throughput_summary`, losses from the checkpoints as in
:func:`~ftlog.analysis.compare_hyperparameters`, costs from :mod:`ftlog.analysis.cost`.
"""

from __future__ import annotations

from typing import Unpack

import pandas as pd
from sqlalchemy import ColumnElement, Connection

from ftlog.analysis._read import (
    Filters,
    Kind,
    StoreLike,
    columns,
    fetch,
    hyper_table,
    job_rows,
    public,
    reading,
    typed,
)
from ftlog.analysis.history import HYPERPARAMETER_COLUMNS, HYPERPARAMETER_NAMES
from ftlog.analysis.speed import summary
from ftlog.analysis.training import LOSS_OUTCOMES, loss_outcomes
from ftlog.pricing import PriceTable

RUN_COLUMNS: dict[str, Kind] = {
    **columns("source job_id model status"),
    **{name: HYPERPARAMETER_COLUMNS[name] for name in HYPERPARAMETER_NAMES},
    **columns(
        "trained_tokens:int queued_s:float running_s:float mean_tokens_per_s:float"
        " mean_steps_per_s:float"
    ),
    **dict.fromkeys(LOSS_OUTCOMES, "float"),
    **columns("estimated_cost:float currency created_at:time finished_at:time"),
}
"""The columns of :func:`runs`."""


def runs(
    store: StoreLike = None, *, prices: PriceTable | None = None, **filters: Unpack[Filters]
) -> pd.DataFrame:
    """One row per job (``RUN_COLUMNS``), in job order.

    - ``model``, ``status``, ``trained_tokens``, ``created_at``, ``finished_at``: the job's
      latest fields (:func:`~ftlog.analysis.load_jobs`).
    - the 12 known hyperparameters, typed as in :func:`~ftlog.analysis.load_hyperparameters`
      (NA when absent or not of the type: OpenAI's ``"auto"``).
    - ``queued_s``, ``running_s``, ``mean_tokens_per_s``, ``mean_steps_per_s`` (OpenAI
      jobs: from their metrics events), ``estimated_cost`` and
      ``currency`` (priced by ``prices``; None: no prices): as in
      :func:`~ftlog.analysis.throughput_summary`.
    - ``final_*_loss`` / ``best_*_loss`` (``train``, ``valid``): the value at the job's last
      checkpoint that has it, and the lowest; NA without checkpoints.
    """
    with reading(store, filters) as (conn, conds, jobs):
        outcomes = job_outcomes(conn, conds, jobs, prices)
        hyper = hyperparameter_rows(conn, conds)
    frame = outcomes.join(hyper[list(HYPERPARAMETER_NAMES)])
    return public(frame.reset_index(), RUN_COLUMNS)


def job_outcomes(
    conn: Connection,
    conds: list[ColumnElement[bool]],
    jobs: pd.DataFrame,
    prices: PriceTable | None,
) -> pd.DataFrame:
    """The throughput summary and ``LOSS_OUTCOMES`` of ``jobs``, in their order, by
    ``job_pk`` (internal: the jobs' own columns come along)."""
    speeds = summary(conn, conds, jobs, prices).set_index("job_pk")
    return speeds.join(loss_outcomes(conn, conds, jobs))


def hyperparameter_rows(conn: Connection, conds: list[ColumnElement[bool]]) -> pd.DataFrame:
    """The selected jobs' hyperparameters, typed (the 12 known ones and ``extra``), by
    ``job_pk``; a job recorded without hyperparameters has no row."""
    kinds = {n: k for n, k in HYPERPARAMETER_COLUMNS.items() if n not in ("source", "job_id")}
    selected = [hyper_table.c[name] for name in ("job_pk", *kinds)]
    raw = fetch(conn, selected, hyper_table, job_rows(conds, hyper_table))
    frame = typed(raw, kinds)
    frame.index = pd.Index(raw["job_pk"].to_numpy("int64"), name="job_pk")
    return frame
