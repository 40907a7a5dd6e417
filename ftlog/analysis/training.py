"""What the API said about training itself: events, checkpoints and loss curves.

**Loss curves** (:func:`loss_curves`) join two records of the losses:

- checkpoints: ``train_loss``, ``valid_loss`` and ``full_valid_loss`` at the checkpoint's
  ``step_number`` (its ``step`` metric when the API gave no ``step_number``);
- metrics events (``type == "metrics"``): the numbers under ``step`` and ``train_loss`` (and
  ``valid_loss``, ``full_valid_loss`` when present) in the event's ``data``. A value that is
  not a number, or a step that is not a whole number >= 0, is left out.

Each job has at most one value per step and metric. Where both have one, the
**checkpoint's wins**: it is the evaluation of a model that was kept (and carries the full
precision; events often repeat it rounded). Between two events (or two checkpoints) for the
same step, the one created last wins.

**Trained tokens at a step** are estimated as ``step × tokens_per_step`` of the job, where
``tokens_per_step = trained_tokens / trained_steps`` from the job's latest fields (as in
:func:`~ftlog.analysis.throughput_summary`). A succeeded job that reports no
``trained_steps`` (OpenAI reports no step counts) divides by its ``total_steps``, else by
the highest step it has a loss for (its last). NA when none of these is known. Training
consumes about the same number of tokens per step (to within packing), so this is exact at
the job's last step and close everywhere else, and every point of a job gets one
(interpolating between snapshots would not, for steps trained before the first poll).
"""

from __future__ import annotations

from typing import Any, Unpack

import numpy as np
import pandas as pd
from sqlalchemy import ColumnElement, Connection, case, func

from ftlog.analysis._read import (
    Filters,
    StoreLike,
    attach,
    checkpoints_table,
    child,
    columns,
    events_table,
    fetch,
    floats,
    job_order,
    job_rows,
    public,
    reading,
)

EVENT_COLUMNS = columns("source job_id event_id created_at:time level type message data:json")
CHECKPOINT_COLUMNS = columns(
    "source job_id checkpoint_id created_at:time step_number:int fine_tuned_model_checkpoint"
    " step:int train_loss:float train_mean_token_accuracy:float valid_loss:float"
    " valid_mean_token_accuracy:float full_valid_loss:float full_valid_mean_token_accuracy:float"
)
LOSS_METRICS = ("train_loss", "valid_loss", "full_valid_loss")
"""The metrics of :func:`loss_curves`, in the order rows of one step come."""
LOSS_CURVE_COLUMNS = columns("source job_id step:int trained_tokens:float metric value:float")
LOSS_OUTCOMES = ("final_train_loss", "best_train_loss", "final_valid_loss", "best_valid_loss")
"""The loss rows of :func:`~ftlog.analysis.compare_hyperparameters`, from checkpoints."""


def load_events(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """Each recorded event of each job, in time order (``EVENT_COLUMNS``).

    ``level``, ``type`` and ``message`` as the API gave them; ``data`` is the event's data
    object as canonical JSON text (sorted keys), NA when it had none (a non-object value is
    kept as ``{"value": ...}``).
    """
    with reading(store, filters) as (conn, conds, jobs):
        return child(conn, jobs, events_table, conds, EVENT_COLUMNS, "created_at", "id")


def load_checkpoints(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """Each recorded checkpoint of each job, in time order (``CHECKPOINT_COLUMNS``).

    ``step_number`` and ``fine_tuned_model_checkpoint`` as the API gave them; the other
    columns are the checkpoint's ``metrics`` (NA when absent or not a number). Metrics
    ftlog has no column for are kept in the store (``checkpoints.body``).
    """
    with reading(store, filters) as (conn, conds, jobs):
        return child(
            conn, jobs, checkpoints_table, conds, CHECKPOINT_COLUMNS, "created_at", "step_number"
        )


events = load_events
checkpoints = load_checkpoints


def loss_curves(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """Train and validation loss against step, one row per job, step and metric
    (``LOSS_CURVE_COLUMNS``; ``metric`` is one of ``LOSS_METRICS``).

    Built from checkpoints and metrics events, one value per step and metric (the
    checkpoint's wins), with ``trained_tokens`` estimated at each step: see the
    :mod:`ftlog.analysis.training` docstring. Rows come job by job, then by step, then in
    ``LOSS_METRICS`` order.
    """
    with reading(store, filters) as (conn, conds, jobs):
        found = [_checkpoint_points(conn, conds), _event_points(conn, conds)]
    points = pd.concat(found, ignore_index=True)
    step = pd.to_numeric(points["step"], errors="coerce").astype("float64")
    whole = step.notna() & (step >= 0) & (step == np.floor(step))
    points = points.assign(step=step)[whole & points["value"].notna()]
    rank = points["metric"].map({m: i for i, m in enumerate(LOSS_METRICS)})
    order = job_order(
        jobs, points["job_pk"], points["step"], rank, points["origin"], -points["created_at"],
        -points["id"],
    )  # fmt: skip
    points = points.iloc[order].drop_duplicates(["job_pk", "step", "metric"])
    last_step = points.groupby("job_pk")["step"].max()
    per_step = tokens_per_step(jobs, last_step).reindex(points["job_pk"].to_numpy("int64"))
    points["trained_tokens"] = floats(points["step"]) * per_step.to_numpy()
    return public(attach(jobs, points), LOSS_CURVE_COLUMNS)


def loss_outcomes(
    conn: Connection, conds: list[ColumnElement[bool]], jobs: pd.DataFrame
) -> pd.DataFrame:
    """``LOSS_OUTCOMES`` by ``job_pk``: per loss (``train_loss``, ``valid_loss``) the value
    of the job's last checkpoint that has it (by step, then time) and the lowest value."""
    c = checkpoints_table.c
    selected = [c.job_pk, c.step_number, c.step, c.created_at, c.train_loss, c.valid_loss]
    raw = fetch(conn, selected, checkpoints_table, job_rows(conds, checkpoints_table))
    raw["step"] = checkpoint_step(raw)
    raw = raw.iloc[job_order(jobs, raw["job_pk"], raw["step"], raw["created_at"])]
    out = pd.DataFrame(index=pd.Index(jobs["job_pk"], name="job_pk"))
    for loss in ("train", "valid"):
        values = raw.groupby("job_pk")[f"{loss}_loss"]
        out[f"final_{loss}_loss"] = values.last()
        out[f"best_{loss}_loss"] = values.min()
    return out.astype("Float64")


def checkpoint_step(checkpoints: pd.DataFrame) -> pd.Series:
    """The step of each checkpoint (rows with ``step_number`` and ``step``, the step its
    metrics name): its ``step_number``, else its ``step`` metric; NA when it has neither.

    The one place this rule lives: loss curves, loss outcomes, step points and ``ftlog show``
    all take a checkpoint's step from here."""
    number = pd.to_numeric(checkpoints["step_number"], errors="coerce")
    return number.fillna(pd.to_numeric(checkpoints["step"], errors="coerce"))


def step_points(conn: Connection, conds: list[ColumnElement[bool]]) -> pd.DataFrame:
    """Training steps over time as the API logged them (internal: times in µs): rows of
    ``job_pk``, ``at``, ``step``, ``total_steps``, sorted by job and time, from metrics
    events (``data.step`` and ``data.total_steps`` at the event's ``created_at``), or, for a
    job that logged no metrics events, its checkpoints (:func:`checkpoint_step` at their
    ``created_at``): the two are written at different times (a checkpoint after later steps'
    events), and taken together a late checkpoint would read as the counter going back.

    A step that is not a whole number >= 0 (a JSON number) is left out. Steps logged at one
    time (OpenAI stamps events to the second) are one point, the highest; a step logged again
    right after itself is one point, the first. A step lower than the one before stays: the
    job restarted from a checkpoint (a counter reset). ``total_steps`` is the last one the
    job's metrics events named (NaN if none did)."""
    e, c = events_table.c, checkpoints_table.c
    numbers = [json_number(conn, e.data, name) for name in ("step", "total_steps")]
    where = [e.type == "metrics", *job_rows(conds, events_table)]
    logged = fetch(conn, [e.job_pk, e.created_at, *numbers], events_table, where)
    selected = [c.job_pk, c.created_at, c.step_number, c.step]
    saved = fetch(conn, selected, checkpoints_table, job_rows(conds, checkpoints_table))
    saved = saved[~saved["job_pk"].isin(pd.Index(logged["job_pk"].unique()))]
    saved = saved.assign(step=checkpoint_step(saved), total_steps=np.nan)
    points = pd.concat([logged, saved[logged.columns]], ignore_index=True)
    step = pd.to_numeric(points["step"], errors="coerce").astype("float64")
    total = pd.to_numeric(points["total_steps"], errors="coerce").astype("float64")
    points = pd.DataFrame(
        {
            "job_pk": points["job_pk"].astype("int64"),
            "at": points["created_at"].astype("float64"),
            "step": step,
            "total_steps": total.where((total > 0) & (total == np.floor(total))),
        }
    )[step.notna() & (step >= 0) & (step == np.floor(step))]
    points = points.sort_values(["job_pk", "at", "step"], kind="stable")
    points["total_steps"] = points.groupby("job_pk")["total_steps"].transform("last")
    points = points.drop_duplicates(["job_pk", "at"], keep="last")
    pk, steps = points["job_pk"].to_numpy("int64"), points["step"].to_numpy("float64")
    again = np.zeros(len(points), dtype=bool)
    again[1:] = (pk[1:] == pk[:-1]) & (steps[1:] == steps[:-1])
    return points[~again].reset_index(drop=True)


def json_number(conn: Connection, column: Any, key: str) -> ColumnElement[Any]:
    """``column[key]`` as text where it is a JSON number, else NULL: SQLite's json_extract
    reads ``true`` as 1, and a number written as a text is no number on either database."""
    if conn.dialect.name == "postgresql":
        numeric = func.json_typeof(column[key]) == "number"
    else:
        numeric = func.json_type(column, f'$."{key}"').in_(("integer", "real"))
    return case((numeric, column[key].as_string()), else_=None).label(key)


def _checkpoint_points(conn: Connection, conds: list[ColumnElement[bool]]) -> pd.DataFrame:
    c = checkpoints_table.c
    selected = [c.job_pk, c.id, c.created_at, c.step_number, c.step, *(c[m] for m in LOSS_METRICS)]
    raw = fetch(conn, selected, checkpoints_table, job_rows(conds, checkpoints_table))
    raw["step"] = checkpoint_step(raw)
    return _long(raw.drop(columns="step_number"), origin=0)


def _event_points(conn: Connection, conds: list[ColumnElement[bool]]) -> pd.DataFrame:
    e = events_table.c
    numbers = [json_number(conn, e.data, name) for name in ("step", *LOSS_METRICS)]
    where = [e.type == "metrics", *job_rows(conds, events_table)]
    raw = fetch(conn, [e.job_pk, e.id, e.created_at, *numbers], events_table, where)
    return _long(raw, origin=1)


def _long(raw: pd.DataFrame, origin: int) -> pd.DataFrame:
    """One row per point and metric: job_pk, id, created_at, step, origin, metric, value."""
    numbers = {m: pd.to_numeric(raw[m], errors="coerce").astype("float64") for m in LOSS_METRICS}
    wide = raw.drop(columns=list(LOSS_METRICS)).assign(origin=origin, **numbers)
    keys = ["job_pk", "id", "created_at", "step", "origin"]
    long = wide.melt(id_vars=keys, value_vars=list(LOSS_METRICS), var_name="metric")
    return long.reset_index(drop=True)


def tokens_per_step(
    jobs: pd.DataFrame, last_step: pd.Series, total_steps: pd.Series | None = None
) -> pd.Series:
    """By ``job_pk``: the job's trained tokens per step (see the module docstring);
    ``last_step`` is the highest step it has a loss for, by ``job_pk``; ``total_steps`` by
    ``job_pk`` (default: the job object's)."""
    tokens = jobs["trained_tokens"].astype("Float64")
    steps = jobs["trained_steps"].astype("Float64")
    done = jobs["status"] == "succeeded"
    if total_steps is None:
        total = jobs["total_steps"].astype("Float64")
    else:
        total = pd.Series(total_steps.reindex(jobs["job_pk"]).to_numpy(), index=jobs.index)
    total = total.astype("Float64").where(done)
    last = pd.Series(last_step.reindex(jobs["job_pk"]).to_numpy(), index=jobs.index)
    for fallback in (total, last.astype("Float64").where(done)):
        steps = steps.where(steps > 0).fillna(fallback.where(fallback > 0))
    per_step = (tokens / steps).to_numpy(dtype="float64", na_value=np.nan)
    return pd.Series(per_step, index=jobs["job_pk"].to_numpy("int64"))
