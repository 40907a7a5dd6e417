"""What was recorded, job by job: jobs, hyperparameters, snapshots, status changes and stays."""

from __future__ import annotations

from typing import Any, Unpack

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, Connection

from ftlog.analysis._read import (
    JOB_COLUMNS,
    US,
    Filters,
    Kind,
    StoreLike,
    as_time,
    attach,
    child,
    columns,
    fetch,
    floats,
    history_table,
    hyper_table,
    job_order,
    job_rows,
    public,
    reading,
    snapshots_table,
    to_us,
)
from ftlog.models import TERMINAL_STATUSES
from ftlog.parse import BOOLEAN_HYPERPARAMETERS, FLOAT_HYPERPARAMETERS

HYPERPARAMETER_NAMES = tuple(
    c.name for c in hyper_table.columns if c.name not in ("job_pk", "extra")
)
"""The 12 known hyperparameters, in the schema's order."""
HYPERPARAMETER_COLUMNS: dict[str, Kind] = {
    "source": "str",
    "job_id": "str",
    **{
        n: "bool"
        if n in BOOLEAN_HYPERPARAMETERS
        else "float"
        if n in FLOAT_HYPERPARAMETERS
        else "int"
        for n in HYPERPARAMETER_NAMES
    },
    "extra": "json",
}
SNAPSHOT_COLUMNS = columns(
    "source job_id status trained_tokens:int trained_steps:int total_steps:int"
    " estimated_finish:time first_observed_at:time last_observed_at:time observations:int"
)
STATUS_HISTORY_COLUMNS = columns(
    "source job_id from_status to_status observed_at:time previous_observed_at:time"
    " estimated_at:time uncertainty_s:float"
)
STATUS_DURATION_COLUMNS = columns(
    "source job_id status entered_at:time entered_uncertainty_s:float left_at:time"
    " left_uncertainty_s:float current:bool seconds:float"
)
Floats = np.ndarray[Any, np.dtype[np.float64]]


def load_jobs(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """One row per job, its latest known fields (columns: ``JOB_COLUMNS``)."""
    with reading(store, filters) as (_, _, jobs):
        return public(jobs, JOB_COLUMNS)


def load_hyperparameters(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """One row per job: its latest hyperparameters (``HYPERPARAMETER_COLUMNS``).

    The 12 known ones have typed columns, NA when absent or when the value did not fit the
    type; ``extra`` holds the others and the misfits (OpenAI's ``"auto"``, say) as canonical
    JSON text (sorted keys), ``"{}"`` when there are none. A job recorded without
    hyperparameters has no row.
    """
    with reading(store, filters) as (conn, conds, jobs):
        return child(conn, jobs, hyper_table, conds, HYPERPARAMETER_COLUMNS)


def load_snapshots(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """Each distinct observed state of each job (``SNAPSHOT_COLUMNS``).

    A snapshot's values were first seen at ``first_observed_at`` and last at
    ``last_observed_at``, over ``observations`` polls; the state changed after the last one.
    """
    with reading(store, filters) as (conn, conds, jobs):
        return child(conn, jobs, snapshots_table, conds, SNAPSHOT_COLUMNS, "first_observed_at")


def load_status_history(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """Each status change (``STATUS_HISTORY_COLUMNS``).

    ``from_status`` is NA on the job's first sighting. The change happened in
    ``(previous_observed_at, observed_at]``; ``estimated_at`` is the estimate and
    ``uncertainty_s`` its ± (see "Transition times" in the :mod:`ftlog.analysis` docstring).
    """
    with reading(store, filters) as (conn, conds, jobs):
        raw = history_rows(conn, conds)
    order = job_order(jobs, raw["job_pk"])
    raw["estimated_at"], raw["uncertainty_s"] = transition_estimates(raw)
    return public(attach(jobs, raw.iloc[order]), STATUS_HISTORY_COLUMNS)


def status_durations(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """How long each job stayed in each status, one row per stay (``STATUS_DURATION_COLUMNS``).

    ``entered_at`` is the estimate of the transition into the status and ``left_at`` that of
    the next transition, each with its ± (``*_uncertainty_s``; see "Transition times").
    ``seconds = left_at - entered_at``. For the job's current status (``current`` true)
    ``left_at`` is NaT; ``seconds`` then runs to the job's last observation (``last_seen_at``
    in :func:`load_jobs`), a lower bound, and is NA for a terminal status (succeeded, failed,
    cancelled), which never ends.
    """
    with reading(store, filters) as (conn, conds, jobs):
        raw = history_rows(conn, conds)
    return public(attach(jobs, stays(jobs, raw)), STATUS_DURATION_COLUMNS)


def history_rows(conn: Connection, conds: list[ColumnElement[bool]]) -> pd.DataFrame:
    selected = [c for c in history_table.columns if c.name != "id"]
    return fetch(conn, selected, history_table, job_rows(conds, history_table))


def transition_estimates(raw: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The estimate (µs) and ± (s) of each transition: see "Transition times"."""
    obs, prev = floats(raw["observed_at"]), floats(raw["previous_observed_at"])
    estimate = np.where(np.isnan(prev), obs, midpoint(prev, obs))
    return pd.Series(estimate, index=raw.index), pd.Series((obs - prev) / 2 / US, index=raw.index)


def midpoint(before: Floats, after: Floats) -> Floats:
    """The estimate of a change seen between two observations (µs): their midpoint, rounded
    up to a whole microsecond, so that it lies in ``(before, after]`` even 1 µs apart."""
    estimate: Floats = np.ceil((before + after) / 2)
    return estimate


def stays(jobs: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """Each stay in a status (internal: times in µs), from the status history."""
    h = raw.iloc[job_order(jobs, raw["job_pk"], raw["observed_at"])].reset_index(drop=True)
    entered, unc = transition_estimates(h)
    pk = h["job_pk"].to_numpy("int64")
    last = np.ones(len(h), dtype=bool)
    last[:-1] = pk[1:] != pk[:-1]
    left = np.where(last, np.nan, np.roll(entered.to_numpy(), -1))
    left_unc = np.where(last, np.nan, np.roll(unc.to_numpy(), -1))
    last_seen = to_us(jobs.set_index("job_pk")["last_seen_at"]).reindex(pk).to_numpy()
    terminal = h["to_status"].isin(TERMINAL_STATUSES).to_numpy(bool)
    end = np.where(last, np.where(terminal, np.nan, last_seen), left)
    return pd.DataFrame(
        {
            "job_pk": pk,
            "status": h["to_status"],
            "entered_at": as_time(entered),
            "entered_uncertainty_s": unc,
            "left_at": as_time(left),
            "left_uncertainty_s": left_unc,
            "current": last,
            "seconds": (end - entered.to_numpy()) / US,
        }
    )
