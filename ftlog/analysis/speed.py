"""Training speed: throughput intervals between snapshots, and a summary per job."""

from __future__ import annotations

from typing import Any, Unpack

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, Connection, Integer, case, cast

from ftlog.analysis._read import (
    US,
    Filters,
    StoreLike,
    attach,
    columns,
    fetch,
    floats,
    job_order,
    job_rows,
    public,
    reading,
    snapshots_table,
    to_us,
)
from ftlog.analysis.cost import job_costs
from ftlog.analysis.history import history_rows, stays
from ftlog.pricing import PriceTable

THROUGHPUT_COLUMNS = columns(
    "source job_id start:time end:time seconds:float tokens:int steps:int tokens_per_s:float"
    " steps_per_s:float"
)
SUMMARY_COLUMNS = columns(
    "source job_id model status trained_tokens:int trained_steps:int queued_s:float"
    " running_s:float mean_tokens_per_s:float median_tokens_per_s:float"
    " peak_tokens_per_s:float intervals:int tokens_per_step:float created_at:time"
    " started_at:time start_uncertainty_s:float ended_at:time end_uncertainty_s:float"
    " finished_at:time finish_estimate_error_s:float first_finish_estimate_error_s:float"
    " estimated_cost:float currency"
)


def throughput(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """Training speed between consecutive progress observations (``THROUGHPUT_COLUMNS``).

    Progress is ``(trained_tokens, trained_steps)``. A *progress point* is a snapshot of a
    running job that is either the first of a running stretch or shows new progress, or the
    snapshot right after a running one (e.g. ``succeeded``) when it shows new progress.
    Snapshots in which only other fields changed (``estimated_finish``) are not points.
    Each interval runs from one point, which must be running, to the next point of the same
    stretch: ``start``/``end`` are the points' ``first_observed_at``, ``tokens`` and ``steps``
    the gain, ``*_per_s`` the gain over ``seconds``. Zero-length intervals are skipped.

    Why ``first_observed_at``: a value was first seen then and reached at most one poll
    earlier, so each end is off by less than one poll interval and the errors do not add up:
    the intervals tile the running period. Using the previous snapshot's
    ``last_observed_at`` as the start would credit a gain made over many polls to the last
    poll interval only and overstate the speed whenever the API reports progress in steps.
    """
    with reading(store, filters) as (conn, conds, jobs):
        progress = progress_rows(conn, conds)
    iv = intervals(progress)
    iv = iv.iloc[job_order(jobs, iv["job_pk"], iv["start"])]
    return public(attach(jobs, iv), THROUGHPUT_COLUMNS)


def throughput_summary(
    store: StoreLike = None, *, prices: PriceTable | None = None, **filters: Unpack[Filters]
) -> pd.DataFrame:
    """One row per job: its speed, timings and estimated cost (``SUMMARY_COLUMNS``).

    - ``trained_tokens``, ``trained_steps``, ``model``, ``status``, ``created_at``,
      ``finished_at``: the job's latest fields as the API gave them.
    - ``queued_s`` / ``running_s``: total ``seconds`` of the job's ``queued`` / ``running``
      stays in :func:`status_durations` (a current stay counts up to the last observation);
      NA if never seen in that status.
    - ``mean_tokens_per_s = trained_tokens / running_s``.
    - ``median_tokens_per_s`` / ``peak_tokens_per_s``: median / maximum of ``tokens_per_s``
      over the job's :func:`throughput` intervals (``intervals`` of them; a peak over a
      short interval is noisy). ``tokens_per_step = trained_tokens / trained_steps``.
    - ``started_at``: when the job first entered ``running`` (the transition estimate), with
      ``start_uncertainty_s``; ``ended_at``: when it last left ``running``, with
      ``end_uncertainty_s``, NaT while still running. Both are from ftlog's polls.
    - ``finish_estimate_error_s = E - finished_at`` in seconds, where E is the last
      ``estimated_finish`` seen in a ``running`` snapshot; positive means the job finished
      before the estimate. ``first_finish_estimate_error_s``: the same for the first
      estimate seen while running. Only for ``succeeded`` jobs with a ``finished_at``.
    - ``estimated_cost`` and its ``currency``: ``trained_tokens`` priced by ``prices``
      (None: no prices); NA where no price matches the
      model (see :mod:`ftlog.analysis.cost`).
    """
    with reading(store, filters) as (conn, conds, jobs):
        return public(summary(conn, conds, jobs, prices), SUMMARY_COLUMNS)


def progress_rows(conn: Connection, conds: list[ColumnElement[bool]]) -> pd.DataFrame:
    """The snapshot columns the speed figures need, sorted by job and first observation."""
    s = snapshots_table.c
    running = cast(case((s.status == "running", 1), else_=0), Integer).label("running")
    selected = [s.job_pk, running, s.trained_tokens, s.trained_steps, s.estimated_finish]
    selected.append(s.first_observed_at)
    raw = fetch(conn, selected, snapshots_table, job_rows(conds, snapshots_table))
    order = np.lexsort((floats(raw["first_observed_at"]), raw["job_pk"].to_numpy("int64")))
    return raw.iloc[order].reset_index(drop=True)


def changed(values: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Where a value differs from the row before (NaN equal to NaN)."""
    before = np.empty_like(values)
    before[:1], before[1:] = np.nan, values[:-1]
    same: np.ndarray[Any, np.dtype[np.bool_]] = (values == before) | (
        np.isnan(values) & np.isnan(before)
    )
    moved: np.ndarray[Any, np.dtype[np.bool_]] = ~same
    return moved


def intervals(p: pd.DataFrame) -> pd.DataFrame:
    """Throughput intervals (internal: times in µs) from sorted progress rows."""
    pk, running = p["job_pk"].to_numpy("int64"), p["running"].to_numpy("int64") == 1
    tokens, steps = floats(p["trained_tokens"]), floats(p["trained_steps"])
    at = floats(p["first_observed_at"])
    after_running = np.zeros(len(pk), dtype=bool)
    after_running[1:] = running[:-1] & (pk[1:] == pk[:-1])
    moved = changed(tokens) | changed(steps)
    stretch_start = running & ~after_running
    point = (running & (stretch_start | moved)) | (~running & after_running & moved)
    stretch = np.cumsum(stretch_start)
    idx = np.flatnonzero(point)
    a, b = idx[:-1], idx[1:]
    keep = running[a] & (pk[a] == pk[b]) & (stretch[a] == stretch[b]) & (at[b] > at[a])
    a, b = a[keep], b[keep]
    seconds = (at[b] - at[a]) / US
    gained_tokens, gained_steps = tokens[b] - tokens[a], steps[b] - steps[a]
    return pd.DataFrame(
        {
            "job_pk": pk[a],
            "start": at[a],
            "end": at[b],
            "seconds": seconds,
            "tokens": gained_tokens,
            "steps": gained_steps,
            "tokens_per_s": gained_tokens / seconds,
            "steps_per_s": gained_steps / seconds,
        }
    )


def summary(
    conn: Connection,
    conds: list[ColumnElement[bool]],
    jobs: pd.DataFrame,
    prices: PriceTable | None,
) -> pd.DataFrame:
    """The throughput summary of ``jobs`` (internal: keeps ``job_pk``)."""
    progress = progress_rows(conn, conds)
    runs_and_waits = stays(jobs, history_rows(conn, conds))
    out = jobs.set_index("job_pk")
    for status, name in (("queued", "queued_s"), ("running", "running_s")):
        stay = runs_and_waits[runs_and_waits["status"] == status]
        out[name] = stay.groupby("job_pk")["seconds"].sum(min_count=1)
    runs = runs_and_waits[runs_and_waits["status"] == "running"]
    first = runs.drop_duplicates("job_pk", keep="first").set_index("job_pk")
    last = runs.drop_duplicates("job_pk", keep="last").set_index("job_pk")
    out["started_at"] = first["entered_at"]
    out["start_uncertainty_s"] = first["entered_uncertainty_s"]
    ended = ~last["current"]
    out["ended_at"] = last["left_at"].where(ended)
    out["end_uncertainty_s"] = last["left_uncertainty_s"].where(ended)
    speeds = intervals(progress).groupby("job_pk")["tokens_per_s"]
    out["median_tokens_per_s"], out["peak_tokens_per_s"] = speeds.median(), speeds.max()
    out["intervals"] = speeds.size().reindex(out.index, fill_value=0)
    tokens, steps = out["trained_tokens"].astype("Float64"), out["trained_steps"].astype("Float64")
    out["mean_tokens_per_s"] = tokens / out["running_s"].where(out["running_s"] > 0)
    out["tokens_per_step"] = tokens / steps.where(steps > 0)
    estimates = pd.Series(floats(progress["estimated_finish"]), index=progress["job_pk"])
    estimates = estimates[progress["running"].to_numpy("int64") == 1].groupby(level=0)
    succeeded = (out["status"] == "succeeded").to_numpy(dtype=bool, na_value=False)
    finished = to_us(out["finished_at"]).where(succeeded)
    out["finish_estimate_error_s"] = (estimates.last() - finished) / US
    out["first_finish_estimate_error_s"] = (estimates.first() - finished) / US
    costs = job_costs(out, prices)
    out["estimated_cost"], out["currency"] = costs["estimated_cost"], costs["currency"]
    return out.reset_index()
