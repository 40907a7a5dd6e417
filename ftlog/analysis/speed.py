"""Training speed: throughput intervals between progress points, and a summary per job.

**Progress points.** Progress is ``(trained_tokens, trained_steps)`` as the job object gives
it. A *progress point* is a snapshot of a running job that is either the first of a running
stretch or shows new progress. Snapshots in which only other fields changed
(``estimated_finish``) are not points. A point's time is its ``first_observed_at``: a value
was first seen then and reached at most one poll earlier, so each end is off by less than one
poll interval and the errors do not add up: the intervals tile the observed run. (Using the
previous snapshot's ``last_observed_at`` instead would credit a gain made over many polls to
the last poll only and overstate the speed whenever the API reports progress in steps.)

**The last, partial interval is left out.** The progress a job made after its last running
point (it ended, or was paused, between two polls) has no time ftlog knows: training stopped
somewhere in that poll interval. Timed to the poll that saw the new status it would read as a
slowdown, timed to the transition's estimate it would read as a slowdown or a burst as the
estimate missed by up to half a poll; so it is no interval, and its tokens count in neither
``observed_tokens`` nor the mean (``trained_tokens`` = ``tokens_before_first_seen`` +
``observed_tokens`` + that last gain).

**Progress from the event log.** A job whose running snapshots never carry tokens or steps
(OpenAI reports ``trained_tokens`` only at the end and no step counts) takes its points from
its metrics events and checkpoints instead (:func:`~ftlog.analysis.training.step_points`):
each logged step at the API's ``created_at``. These intervals have steps and no tokens; a
job's points come from one of the two sources, never both (they run on different clocks).

**Counter resets.** A point whose tokens or steps are below the job's previous known value
(the provider restarted the counter) breaks the run: the interval into it is not counted (no
negative speed), the next one is flagged ``after_reset``, and ``resets`` counts them.
"""

from __future__ import annotations

from typing import Unpack

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
from ftlog.analysis.history import Floats, history_rows, stays
from ftlog.analysis.training import step_points, tokens_per_step
from ftlog.pricing import PriceTable

Flags = np.ndarray[tuple[int], np.dtype[np.bool_]]
Ints = np.ndarray[tuple[int], np.dtype[np.int64]]

THROUGHPUT_COLUMNS = columns(
    "source job_id start:time end:time seconds:float tokens:int steps:int tokens_per_s:float"
    " steps_per_s:float after_reset:bool"
)
SUMMARY_COLUMNS = columns(
    "source job_id model status trained_tokens:int trained_steps:int total_steps:int"
    " tokens_before_first_seen:int observed_tokens:int queued_s:float running_s:float"
    " mean_tokens_per_s:float median_tokens_per_s:float peak_tokens_per_s:float"
    " mean_steps_per_s:float intervals:int resets:int tokens_per_step:float created_at:time"
    " started_at:time start_uncertainty_s:float ended_at:time end_uncertainty_s:float eta:time"
    " finished_at:time finish_estimate_error_s:float first_finish_estimate_error_s:float"
    " estimated_cost:float currency"
)


def throughput(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """Training speed between consecutive progress points (``THROUGHPUT_COLUMNS``).

    Each interval runs from one point, which must be running, to the next point of the same
    running stretch (see the :mod:`ftlog.analysis.speed` docstring for points, the last
    partial interval, the event log and resets): ``start``/``end`` are the points' times,
    ``tokens`` and ``steps`` the gains (NA where a count is unknown at either end),
    ``*_per_s`` the gain over ``seconds``. An interval of zero length, or with neither gain
    known, is left out. ``after_reset``: a counter reset was seen since the job's previous
    interval (or before its first), so there is a break before this one.
    """
    with reading(store, filters) as (conn, conds, jobs):
        points = progress(progress_rows(conn, conds), step_points(conn, conds))
    iv = intervals(points)
    iv = iv.iloc[job_order(jobs, iv["job_pk"], iv["start"])]
    return public(attach(jobs, iv), THROUGHPUT_COLUMNS)


def throughput_summary(
    store: StoreLike = None, *, prices: PriceTable | None = None, **filters: Unpack[Filters]
) -> pd.DataFrame:
    """One row per job: its speed, timings and estimated cost (``SUMMARY_COLUMNS``).

    - ``trained_tokens``, ``trained_steps``, ``model``, ``status``, ``created_at``,
      ``finished_at``: the job's latest fields as the API gave them. ``total_steps``: the
      job object's, else the last its metrics events named.
    - ``tokens_before_first_seen``: the trained tokens of the job's first snapshot: trained
      before ftlog saw any, they are never divided by time; 0 when that snapshot had no
      count and the job ran only later, NA when it had none otherwise (first seen running).
      ``observed_tokens``: the tokens gained over the job's :func:`throughput` intervals,
      i.e. while ftlog observed it running (NA with no interval that has a token gain).
    - ``queued_s`` / ``running_s``: total ``seconds`` of the job's ``queued`` / ``running``
      stays in :func:`status_durations` (a current stay counts up to the last observation);
      NA if never seen in that status.
    - ``mean_tokens_per_s = observed_tokens / the seconds of those intervals``: the
      intervals' speeds weighted by their length, so ``min <= mean <= peak`` of
      ``tokens_per_s`` for every job. ``median_tokens_per_s`` / ``peak_tokens_per_s``: median
      / maximum of ``tokens_per_s`` over the same intervals (a peak over a short interval is
      noisy). ``mean_steps_per_s``: the same as the mean, for steps. ``intervals``: how many
      throughput intervals the job has; ``resets``: counter resets seen.
    - ``tokens_per_step``: ``trained_tokens / trained_steps``; for a succeeded job without
      step counts (OpenAI), ``trained_tokens / total_steps``, else over the last step
      logged: see :mod:`ftlog.analysis.training`.
    - ``started_at``: when the job first entered ``running`` (the transition estimate), with
      ``start_uncertainty_s``; NaT for a job first seen running (it started at some unknown
      time before); ``ended_at``: when it last left ``running``, with
      ``end_uncertainty_s``, NaT while still running. Both are from ftlog's polls.
    - ``eta``: for a running job, its last progress point's time plus the remaining steps
      (``total_steps`` minus the steps at that point) over ``mean_steps_per_s``; NaT for
      other jobs and where any of these is unknown.
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


def changed(values: Floats) -> Flags:
    """Where a value differs from the row before (NaN equal to NaN)."""
    before = np.empty_like(values)
    before[:1], before[1:] = np.nan, values[:-1]
    same: Flags = (values == before) | (np.isnan(values) & np.isnan(before))
    return ~same


def new_job(pk: Ints) -> Flags:
    """Where a row is its job's first (rows sorted by job)."""
    first: Flags = np.ones(len(pk), dtype=bool)
    first[1:] = pk[1:] != pk[:-1]
    return first


def resets(pk: Ints, values: Floats) -> Flags:
    """Where a counter is below its job's previous known value (rows sorted by job, time)."""
    known = pd.Series(values).groupby(pk).ffill()
    previous = floats(known.groupby(pk).shift())
    lower: Flags = np.less(values, previous, where=~np.isnan(previous), out=np.zeros(len(pk), bool))
    return lower


def snapshot_points(p: pd.DataFrame, logged: Flags) -> pd.DataFrame:
    """Every snapshot row as a progress row (see :func:`progress`); ``logged`` marks the
    rows of jobs whose points come from the event log, which are no points here."""
    pk, running = p["job_pk"].to_numpy("int64"), p["running"].to_numpy("int64") == 1
    tokens, steps = floats(p["trained_tokens"]), floats(p["trained_steps"])
    after_running = np.zeros(len(pk), dtype=bool)
    after_running[1:] = running[:-1] & ~new_job(pk)[1:]
    moved = changed(tokens) | changed(steps)
    starts = running & ~after_running
    # A poll whose answer lacks the counts is no point (and no break): the gain across it is
    # known from the points around it.
    counted = ~np.isnan(tokens) | ~np.isnan(steps)
    point = running & (starts | moved) & counted & ~logged
    return pd.DataFrame(
        {
            "job_pk": pk,
            "at": floats(p["first_observed_at"]),
            "tokens": tokens,
            "steps": steps,
            "point": point,
            "opens": running,
            "starts": first_of_stretch(pk, np.cumsum(starts), point),
            "reset": resets(pk, tokens) | resets(pk, steps),
        }
    )


def first_of_stretch(pk: Ints, stretch: Ints, point: Flags) -> Flags:
    """Where a point is the first of its running stretch (``stretch`` numbers the rows' stretches):
    a stretch that began at a row that is no point begins at its first point."""
    idx = np.flatnonzero(point)
    first = new_job(pk[idx]) | np.r_[True, stretch[idx][1:] != stretch[idx][:-1]]
    starts: Flags = np.zeros(len(pk), dtype=bool)
    starts[idx] = first
    return starts


def logged_points(points: pd.DataFrame, p: pd.DataFrame) -> pd.DataFrame:
    """Steps from the event log (:func:`step_points`) as progress rows. A step logged after
    the job was seen not running (requeued, paused) since the step before begins a new
    stretch: the time in between was no training time."""
    pk, steps = points["job_pk"].to_numpy("int64"), floats(points["step"])
    at = floats(points["at"])
    return pd.DataFrame(
        {
            "job_pk": pk,
            "at": at,
            "tokens": np.full(len(pk), np.nan),
            "steps": steps,
            "point": True,
            "opens": True,
            "starts": new_job(pk) | seen_stopped(pk, at, p),
            "reset": resets(pk, steps),
        }
    )


def seen_stopped(pk: Ints, at: Floats, p: pd.DataFrame) -> Flags:
    """Where a job (rows sorted by job and time ``at``) was observed in another status than
    running since the row before: the number of such observations (``p``'s snapshot rows)
    made by each row's time went up."""
    stopped = p[p["running"].to_numpy("int64") == 0]
    stopped = stopped.assign(count=stopped.groupby("job_pk").cumcount() + 1)
    left = pd.DataFrame({"job_pk": pk, "at": at, "order": np.arange(len(pk))}).sort_values("at")
    right = stopped[["job_pk", "first_observed_at", "count"]].sort_values("first_observed_at")
    right = right.astype({"job_pk": "int64", "first_observed_at": "float64"})
    merged = pd.merge_asof(
        left, right, left_on="at", right_on="first_observed_at", by="job_pk", direction="backward"
    ).sort_values("order")
    count = merged["count"].fillna(0).to_numpy("float64")
    went_up: Flags = np.zeros(len(pk), dtype=bool)
    went_up[1:] = (pk[1:] == pk[:-1]) & (count[1:] > count[:-1])
    return went_up


def progress(p: pd.DataFrame, logged: pd.DataFrame) -> pd.DataFrame:
    """Progress rows (internal: times in µs), by job and time: each snapshot row of
    :func:`progress_rows` and, for jobs whose running snapshots have no counts, each point of
    the event log (``logged``, from :func:`step_points`).

    Columns: ``job_pk``, ``at``, ``tokens``, ``steps``, ``point`` (a progress point),
    ``opens`` (an interval may start here: running), ``starts`` (a new running stretch),
    ``reset`` (a counter went down here) and ``seen`` (resets of the job so far)."""
    running = p["running"].to_numpy("int64") == 1
    counted = ~np.isnan(floats(p["trained_tokens"])) | ~np.isnan(floats(p["trained_steps"]))
    with_counts = pd.Index(p["job_pk"][running & counted].unique())
    logged = logged[~logged["job_pk"].isin(with_counts)]
    from_log = p["job_pk"].isin(pd.Index(logged["job_pk"].unique())).to_numpy(bool)
    rows = pd.concat(
        [snapshot_points(p, from_log), logged_points(logged, p[from_log])], ignore_index=True
    )
    rows = rows.iloc[np.lexsort((floats(rows["at"]), rows["job_pk"].to_numpy("int64")))]
    return rows.assign(seen=rows.groupby("job_pk")["reset"].cumsum()).reset_index(drop=True)


def intervals(rows: pd.DataFrame) -> pd.DataFrame:
    """Throughput intervals (internal: times in µs) from :func:`progress` rows."""
    points = rows[rows["point"].to_numpy(bool)]
    pk, at = points["job_pk"].to_numpy("int64"), floats(points["at"])
    tokens, steps = floats(points["tokens"]), floats(points["steps"])
    seen = points["seen"].to_numpy("int64")
    first = new_job(pk)
    broken = first | points["starts"].to_numpy(bool)
    broken[1:] |= seen[1:] > seen[:-1]
    piece = np.cumsum(broken)
    a, b = np.arange(len(pk) - 1), np.arange(1, len(pk))
    gained_tokens, gained_steps = tokens[b] - tokens[a], steps[b] - steps[a]
    known = ~np.isnan(gained_tokens) | ~np.isnan(gained_steps)
    opens = points["opens"].to_numpy(bool)
    keep = opens[a] & (piece[a] == piece[b]) & (at[b] > at[a]) & known
    a, b = a[keep], b[keep]
    gained_tokens, gained_steps = gained_tokens[keep], gained_steps[keep]
    seconds = (at[b] - at[a]) / US
    previous = np.zeros(len(a), dtype="int64")  # resets seen by the end of the last interval
    previous[1:] = np.where(pk[a][1:] == pk[a][:-1], seen[b][:-1], 0)
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
            "after_reset": seen[a] > previous,
        }
    )


def summary(
    conn: Connection,
    conds: list[ColumnElement[bool]],
    jobs: pd.DataFrame,
    prices: PriceTable | None,
) -> pd.DataFrame:
    """The throughput summary of ``jobs`` (internal: keeps ``job_pk``)."""
    snapshots, logged = progress_rows(conn, conds), step_points(conn, conds)
    runs_and_waits = stays(jobs, history_rows(conn, conds))
    rows = progress(snapshots, logged)
    out = jobs.set_index("job_pk")
    for status, name in (("queued", "queued_s"), ("running", "running_s")):
        stay = runs_and_waits[runs_and_waits["status"] == status]
        out[name] = stay.groupby("job_pk")["seconds"].sum(min_count=1)
    runs = runs_and_waits[runs_and_waits["status"] == "running"]
    first = runs.drop_duplicates("job_pk", keep="first").set_index("job_pk")
    last = runs.drop_duplicates("job_pk", keep="last").set_index("job_pk")
    # First seen already running: it started at some unknown time before; no estimate.
    unknown = first["entered_uncertainty_s"].isna()
    out["started_at"] = first["entered_at"].mask(unknown)
    out["start_uncertainty_s"] = first["entered_uncertainty_s"]
    ended = ~last["current"]
    out["ended_at"] = last["left_at"].where(ended)
    out["end_uncertainty_s"] = last["left_uncertainty_s"].where(ended)
    logged_totals = logged.groupby("job_pk")["total_steps"].last()
    out["total_steps"] = out["total_steps"].astype("Float64").fillna(logged_totals)
    out["tokens_before_first_seen"] = tokens_at_first_sighting(snapshots)
    speeds(out, intervals(rows))
    out["resets"] = rows.groupby("job_pk")["reset"].sum().reindex(out.index, fill_value=0)
    last_step = logged.groupby("job_pk")["step"].max()
    out["tokens_per_step"] = tokens_per_step(jobs, last_step, out["total_steps"])
    out["eta"] = eta(out, rows)  # µs, a time once public
    estimates = pd.Series(floats(snapshots["estimated_finish"]), index=snapshots["job_pk"])
    estimates = estimates[snapshots["running"].to_numpy("int64") == 1].groupby(level=0)
    succeeded = (out["status"] == "succeeded").to_numpy(dtype=bool, na_value=False)
    finished = to_us(out["finished_at"]).where(succeeded)
    out["finish_estimate_error_s"] = (estimates.last() - finished) / US
    out["first_finish_estimate_error_s"] = (estimates.first() - finished) / US
    costs = job_costs(out, prices)
    out["estimated_cost"], out["currency"] = costs["estimated_cost"], costs["currency"]
    return out.reset_index()


def tokens_at_first_sighting(snapshots: pd.DataFrame) -> pd.Series:
    """By ``job_pk``: the trained tokens of each job's first snapshot; 0 when that snapshot
    has none and the job ran only later (first seen queued, say); NA when it has none
    otherwise (first seen running: unknown, not all of it)."""
    first = snapshots.drop_duplicates("job_pk", keep="first").set_index("job_pk")
    ran_later = snapshots.groupby("job_pk")["running"].max() == 1
    before_running = (first["running"] == 0) & ran_later
    tokens = first["trained_tokens"].astype("Float64")
    return tokens.mask(tokens.isna() & before_running, 0)


def speeds(out: pd.DataFrame, iv: pd.DataFrame) -> None:
    """Set the speed columns of ``out`` (by ``job_pk``) from its jobs' intervals."""
    out["intervals"] = iv.groupby("job_pk").size().reindex(out.index, fill_value=0)
    for unit, mean in (("tokens", "mean_tokens_per_s"), ("steps", "mean_steps_per_s")):
        counted = iv[iv[unit].notna()].groupby("job_pk")
        gained, seconds = counted[unit].sum(), counted["seconds"].sum()
        out[mean] = gained / seconds
        if unit == "tokens":
            out["observed_tokens"] = gained
            per_s = counted["tokens_per_s"]
            out["median_tokens_per_s"], out["peak_tokens_per_s"] = per_s.median(), per_s.max()


def eta(out: pd.DataFrame, rows: pd.DataFrame) -> pd.Series:
    """By ``job_pk``: the projected end (µs) of each running job, see
    :func:`throughput_summary`; NaN where it is unknown."""
    points = rows[rows["point"].to_numpy(bool) & rows["steps"].notna().to_numpy(bool)]
    last = points.groupby("job_pk")[["at", "steps"]].last().reindex(out.index)
    rate = out["mean_steps_per_s"].astype("Float64")
    remaining = (out["total_steps"].astype("Float64") - last["steps"]).clip(lower=0)
    running = (out["status"] == "running").fillna(False)
    projected = last["at"] + remaining / rate.where(rate > 0) * US
    return projected.where(running).astype("float64")
