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

Unknown job ids give empty frames; only :func:`compare_hyperparameters` raises for them.

**Frames** are tidy, one row per record, and name their job in ``source`` and ``job_id`` (a job
id is unique within a source); their columns, in order, are the keys of the ``*_COLUMNS``
constants below (name → kind). Times are ``datetime64[us, UTC]``; integers ``Int64``, other
numbers ``Float64``, flags ``boolean``, text ``string`` (missing values are ``pd.NA``/``NaT``);
durations are ``Float64`` seconds (``*_s``). Rows come job by job (jobs ordered by
``created_at``, then source and job id), and in time order within a job.

**Transition times.** ftlog polls: a status change recorded at ``observed_at`` happened in
``(previous_observed_at, observed_at]``. Its *estimate* is the midpoint of that interval and its
*uncertainty* (``±``) half its length. On a job's first sighting (``from_status`` null) the
status was entered at or before ``observed_at``: the estimate is ``observed_at``, an upper
bound, and the uncertainty is unknown (NA); durations from it are lower bounds.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict, Unpack

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    FromClause,
    Integer,
    Table,
    case,
    cast,
    extract,
    select,
)

from ftlog.db import open_store
from ftlog.errors import UsageProblem
from ftlog.models import (
    TERMINAL_STATUSES,
    Hyperparameters,
    Job,
    Snapshot,
    Source,
    StatusChange,
    UTCDateTime,
)
from ftlog.parse import BOOLEAN_HYPERPARAMETERS, FLOAT_HYPERPARAMETERS, canonical_json

StoreLike = str | Engine | None
"""A database URL or SQLite path, an engine, or None for the default store."""


class Filters(TypedDict, total=False):
    """The filters every loader accepts; see the module docstring."""

    job_ids: Iterable[str] | None
    source: str | None
    model: str | None
    status: str | Iterable[str] | None
    since: datetime | str | None
    until: datetime | str | None


_jobs: Table = Job.__table__  # type: ignore[assignment]
_sources: Table = Source.__table__  # type: ignore[assignment]
_hyper: Table = Hyperparameters.__table__  # type: ignore[assignment]
_snapshots: Table = Snapshot.__table__  # type: ignore[assignment]
_history: Table = StatusChange.__table__  # type: ignore[assignment]

Kind = Literal["str", "int", "float", "bool", "time", "json"]
_DTYPES: dict[Kind, str] = {
    "str": "string",
    "int": "Int64",
    "float": "Float64",
    "bool": "boolean",
    "time": "datetime64[us, UTC]",
    "json": "string",
}
_US = 1_000_000


def _columns(spec: str) -> dict[str, Kind]:
    """``"name name:kind ..."`` as {name: kind}; the kind is "str" unless given."""
    pairs = (f"{word}:str".split(":")[:2] for word in spec.split())
    return typing.cast("dict[str, Kind]", dict(pairs))


JOB_COLUMNS = _columns(
    "source job_id model status created_at:time finished_at:time training_file validation_file"
    " suffix seed:int organization_id error_code error_message error_param trained_tokens:int"
    " trained_steps:int total_steps:int estimated_finish:time fine_tuned_model method_type"
    " first_seen_at:time last_seen_at:time"
)
HYPERPARAMETER_NAMES = tuple(c.name for c in _hyper.columns if c.name not in ("job_pk", "extra"))
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
SNAPSHOT_COLUMNS = _columns(
    "source job_id status trained_tokens:int trained_steps:int total_steps:int"
    " estimated_finish:time first_observed_at:time last_observed_at:time observations:int"
)
STATUS_HISTORY_COLUMNS = _columns(
    "source job_id from_status to_status observed_at:time previous_observed_at:time"
    " estimated_at:time uncertainty_s:float"
)
STATUS_DURATION_COLUMNS = _columns(
    "source job_id status entered_at:time entered_uncertainty_s:float left_at:time"
    " left_uncertainty_s:float current:bool seconds:float"
)
THROUGHPUT_COLUMNS = _columns(
    "source job_id start:time end:time seconds:float tokens:int steps:int tokens_per_s:float"
    " steps_per_s:float"
)
SUMMARY_COLUMNS = _columns(
    "source job_id model status trained_tokens:int trained_steps:int queued_s:float"
    " running_s:float mean_tokens_per_s:float median_tokens_per_s:float"
    " peak_tokens_per_s:float intervals:int tokens_per_step:float created_at:time"
    " started_at:time start_uncertainty_s:float ended_at:time end_uncertainty_s:float"
    " finished_at:time finish_estimate_error_s:float first_finish_estimate_error_s:float"
)
COMPARE_OUTCOMES = tuple(
    _columns(
        "model status trained_tokens trained_steps queued_s running_s mean_tokens_per_s"
        " median_tokens_per_s peak_tokens_per_s tokens_per_step finish_estimate_error_s"
    )
)
"""The rows below the hyperparameters in :func:`compare_hyperparameters`, always shown."""


# --- public API -----------------------------------------------------------------------------


def load_jobs(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """One row per job, its latest known fields (columns: ``JOB_COLUMNS``)."""
    with _reading(store, filters) as (_, _, jobs):
        return _public(jobs, JOB_COLUMNS)


def load_hyperparameters(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """One row per job: its latest hyperparameters (``HYPERPARAMETER_COLUMNS``).

    The 12 known ones have typed columns, NA when absent or when the value did not fit the
    type; ``extra`` holds the others and the misfits (OpenAI's ``"auto"``, say) as canonical
    JSON text (sorted keys), ``"{}"`` when there are none. A job recorded without
    hyperparameters has no row.
    """
    with _reading(store, filters) as (conn, conds, jobs):
        return _child(conn, jobs, _hyper, conds, HYPERPARAMETER_COLUMNS)


def load_snapshots(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """Each distinct observed state of each job (``SNAPSHOT_COLUMNS``).

    A snapshot's values were first seen at ``first_observed_at`` and last at
    ``last_observed_at``, over ``observations`` polls; the state changed after the last one.
    """
    with _reading(store, filters) as (conn, conds, jobs):
        return _child(conn, jobs, _snapshots, conds, SNAPSHOT_COLUMNS, "first_observed_at")


def load_status_history(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """Each status change (``STATUS_HISTORY_COLUMNS``).

    ``from_status`` is NA on the job's first sighting. The change happened in
    ``(previous_observed_at, observed_at]``; ``estimated_at`` is the estimate and
    ``uncertainty_s`` its ± (see "Transition times" in the module docstring).
    """
    with _reading(store, filters) as (conn, conds, jobs):
        raw = _history_rows(conn, conds)
    order = _job_order(jobs, raw["job_pk"])
    raw["estimated_at"], raw["uncertainty_s"] = _transition_estimates(raw)
    return _public(_attach(jobs, raw.iloc[order]), STATUS_HISTORY_COLUMNS)


def status_durations(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """How long each job stayed in each status, one row per stay (``STATUS_DURATION_COLUMNS``).

    ``entered_at`` is the estimate of the transition into the status and ``left_at`` that of
    the next transition, each with its ± (``*_uncertainty_s``; see "Transition times").
    ``seconds = left_at - entered_at``. For the job's current status (``current`` true)
    ``left_at`` is NaT; ``seconds`` then runs to the job's last observation (``last_seen_at``
    in :func:`load_jobs`), a lower bound, and is NA for a terminal status (succeeded, failed,
    cancelled), which never ends.
    """
    with _reading(store, filters) as (conn, conds, jobs):
        raw = _history_rows(conn, conds)
    stays = _stays(jobs, raw)
    return _public(_attach(jobs, stays), STATUS_DURATION_COLUMNS)


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
    with _reading(store, filters) as (conn, conds, jobs):
        progress = _progress_rows(conn, conds)
    iv = _intervals(progress)
    iv = iv.iloc[_job_order(jobs, iv["job_pk"], iv["start"])]
    return _public(_attach(jobs, iv), THROUGHPUT_COLUMNS)


def throughput_summary(store: StoreLike = None, **filters: Unpack[Filters]) -> pd.DataFrame:
    """One row per job: its speed and timings (``SUMMARY_COLUMNS``).

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
    """
    with _reading(store, filters) as (conn, conds, jobs):
        return _public(_summary(conn, conds, jobs), SUMMARY_COLUMNS)


def compare_hyperparameters(
    job_ids: Iterable[str],
    store: StoreLike = None,
    *,
    only_different: bool = True,
    source: str | None = None,
) -> pd.DataFrame:
    """Jobs side by side: one column per job id (in the order given), one row per name.

    Rows: the 12 known hyperparameters, then every ``extra`` key (sorted); a known one whose
    value did not fit its type shows the value as given (``"auto"``); absent is NA; an object
    or array value is shown as canonical JSON. Then the rows ``COMPARE_OUTCOMES`` from
    :func:`load_jobs` and :func:`throughput_summary`. With ``only_different`` and two or more
    jobs, hyperparameter rows with the same value in every job are dropped; outcome rows
    always stay. The frame has object columns (each row has its own type).

    Raises UsageProblem for job ids not in the store, or in several sources unless
    ``source`` picks one.
    """
    ids = list(dict.fromkeys([job_ids] if isinstance(job_ids, str) else job_ids))
    if not ids:
        raise UsageProblem("compare needs at least one job id")
    with _reading(store, {"job_ids": ids, "source": source}) as (conn, conds, jobs):
        missing = [i for i in ids if i not in set(jobs["job_id"])]
        if missing:
            where = f" in source {source}" if source else ""
            raise UsageProblem(
                f"unknown job id{'s' * (len(missing) > 1)}{where}: {', '.join(missing)}"
            )
        twice = jobs[jobs["job_id"].duplicated(keep=False)]
        if len(twice):
            names = ", ".join(sorted(set(twice["source"])))
            raise UsageProblem(
                f"job id {twice['job_id'].iloc[0]} is in several sources ({names}); pass source"
            )
        hyper = _child(conn, jobs, _hyper, conds, HYPERPARAMETER_COLUMNS)
        summary = _public(_summary(conn, conds, jobs), SUMMARY_COLUMNS)
    hyper, summary = hyper.set_index("job_id"), summary.set_index("job_id")
    extras = {j: _json_object(hyper.at[j, "extra"]) if j in hyper.index else {} for j in ids}
    rows: dict[str, list[Any]] = {}
    for name in HYPERPARAMETER_NAMES:
        typed = [hyper.at[j, name] if j in hyper.index else pd.NA for j in ids]
        rows[name] = [
            _plain(t) if t is not pd.NA else extras[j].get(name, pd.NA)
            for t, j in zip(typed, ids, strict=True)
        ]
    for key in sorted({k for e in extras.values() for k in e} - set(HYPERPARAMETER_NAMES)):
        rows[key] = [extras[j].get(key, pd.NA) for j in ids]
    rows = {
        k: [canonical_json(v) if isinstance(v, dict | list) else v for v in vs]
        for k, vs in rows.items()
    }
    if only_different and len(ids) > 1:
        rows = {k: vs for k, vs in rows.items() if len({_key(v) for v in vs}) > 1}
    for name in COMPARE_OUTCOMES:
        rows[name] = [_plain(summary.at[j, name]) for j in ids]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=ids, dtype=object)
    frame.index.name, frame.columns.name = "name", "job_id"
    return frame


# --- reading --------------------------------------------------------------------------------


@contextmanager
def _reading(
    store: StoreLike, filters: Filters
) -> Iterator[tuple[Connection, list[ColumnElement[bool]], pd.DataFrame]]:
    """The filters as WHERE clauses, a connection in one read transaction (so the several
    queries of a function see the same data) and the selected jobs."""
    conds = _conditions(filters)
    with ExitStack() as stack:
        engine = store if isinstance(store, Engine) else stack.enter_context(open_store(store))
        conn = stack.enter_context(engine.connect())
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        stack.enter_context(conn.begin())
        yield conn, conds, _load_jobs(conn, conds)


def _conditions(filters: Filters) -> list[ColumnElement[bool]]:
    """The filters as WHERE clauses on ``jobs`` joined with ``sources``."""
    unknown = set(filters) - set(Filters.__annotations__)
    if unknown:
        raise TypeError(f"unknown filter {', '.join(sorted(unknown))}")
    conds: list[ColumnElement[bool]] = []
    if (job_ids := filters.get("job_ids")) is not None:
        conds.append(_jobs.c.job_id.in_([job_ids] if isinstance(job_ids, str) else list(job_ids)))
    if (source := filters.get("source")) is not None:
        conds.append(_sources.c.name == source)
    if (model := filters.get("model")) is not None:
        conds.append(_jobs.c.model == model)
    if (status := filters.get("status")) is not None:
        conds.append(_jobs.c.status.in_([status] if isinstance(status, str) else list(status)))
    if (since := filters.get("since")) is not None:
        conds.append(_jobs.c.created_at >= _utc(since, "since"))
    if (until := filters.get("until")) is not None:
        conds.append(_jobs.c.created_at < _utc(until, "until"))
    return conds


def _utc(value: datetime | str, name: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise UsageProblem(f"{name}: {value!r} is not an ISO 8601 time") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _fetch(
    conn: Connection, columns: Sequence[Any], source: FromClause, conds: Sequence[Any]
) -> pd.DataFrame:
    """Rows as the driver gives them, but times as float µs since the epoch (NaN for NULL).

    This is the hot path (a million snapshots). The rows are taken from the DBAPI cursor as
    plain tuples: SQLAlchemy's Row objects and its per-value datetime processing would cost
    more than the query. Times are read as text on SQLite (SQLAlchemy's ISO format, parsed
    by pandas in one go) and as integer microseconds computed by Postgres.
    """
    postgres = conn.dialect.name == "postgresql"
    selected = [
        cast(extract("epoch", c) * _US, BigInteger).label(c.name)
        if postgres and c.name in _TIME_COLUMNS
        else c
        for c in columns
    ]
    result = conn.execute(select(*selected).select_from(source).where(*conds))
    try:
        rows = result.cursor.fetchall()
    finally:
        result.close()
    frame = pd.DataFrame.from_records(rows, columns=[c.name for c in columns])
    for name in frame.columns.intersection(list(_TIME_COLUMNS)):
        values = frame[name]
        if values.dtype.kind not in "iuf":
            values = _us(pd.to_datetime(values, format="ISO8601", utc=True))
        frame[name] = values.to_numpy(dtype="float64", na_value=np.nan)
    return frame


_TIME_COLUMNS = frozenset(
    c.name
    for table in (_jobs, _snapshots, _history)
    for c in table.columns
    if isinstance(c.type, UTCDateTime)
)


def _job_rows(conds: Sequence[ColumnElement[bool]], table: Table) -> list[ColumnElement[bool]]:
    """Restrict a child table to the selected jobs, by a subquery on jobs and sources."""
    if not conds:
        return []
    return [table.c.job_pk.in_(select(_jobs.c.id).join(_sources).where(*conds))]


def _load_jobs(conn: Connection, conds: Sequence[ColumnElement[bool]]) -> pd.DataFrame:
    """The selected jobs, typed, ordered, with their primary key in ``job_pk``."""
    columns: list[Any] = [_sources.c.name.label("source"), _jobs.c.id.label("job_pk")]
    columns += [_jobs.c[n] for n in JOB_COLUMNS if n != "source"]
    raw = _fetch(conn, columns, _jobs.join(_sources), conds)
    raw = raw.sort_values(["created_at", "source", "job_id"], kind="stable", ignore_index=True)
    jobs = _typed(raw, JOB_COLUMNS)
    jobs["job_pk"] = raw["job_pk"].astype("int64")
    return jobs


def _child(
    conn: Connection,
    jobs: pd.DataFrame,
    table: Table,
    conds: Sequence[ColumnElement[bool]],
    kinds: dict[str, Kind],
    time: str | None = None,
) -> pd.DataFrame:
    """The ``kinds`` columns of a table keyed by ``job_pk``, typed, named by job, and in
    job order, then ``time`` order."""
    columns = [table.c[n] for n in ("job_pk", *kinds) if n not in ("source", "job_id")]
    raw = _fetch(conn, columns, table, _job_rows(conds, table))
    raw = raw.iloc[_job_order(jobs, raw["job_pk"], raw[time] if time else None)]
    return _public(_attach(jobs, raw), kinds)


def _history_rows(conn: Connection, conds: Sequence[ColumnElement[bool]]) -> pd.DataFrame:
    columns = [c for c in _history.columns if c.name != "id"]
    return _fetch(conn, columns, _history, _job_rows(conds, _history))


def _progress_rows(conn: Connection, conds: Sequence[ColumnElement[bool]]) -> pd.DataFrame:
    """The snapshot columns the speed figures need, sorted by job and first observation."""
    s = _snapshots.c
    running = cast(case((s.status == "running", 1), else_=0), Integer).label("running")
    columns = [s.job_pk, running, s.trained_tokens, s.trained_steps, s.estimated_finish]
    columns.append(s.first_observed_at)
    raw = _fetch(conn, columns, _snapshots, _job_rows(conds, _snapshots))
    order = np.lexsort((_floats(raw["first_observed_at"]), raw["job_pk"].to_numpy("int64")))
    return raw.iloc[order].reset_index(drop=True)


# --- shaping --------------------------------------------------------------------------------


def _typed(raw: pd.DataFrame, kinds: dict[str, Kind]) -> pd.DataFrame:
    columns: dict[str, Any] = {}
    for name, kind in kinds.items():
        col = raw[name]
        if kind == "time" and col.dtype.kind != "M":
            columns[name] = _time(col)
        elif kind == "json":
            columns[name] = col.map(_canonical).astype("string")
        else:
            columns[name] = col.astype(_DTYPES[kind])  # type: ignore[call-overload]
    return pd.DataFrame(columns, index=raw.index)


def _public(frame: pd.DataFrame, kinds: dict[str, Kind]) -> pd.DataFrame:
    """The documented columns only, in order and with their dtypes, on a fresh 0..n-1 index."""
    return _typed(frame[list(kinds)], kinds).reset_index(drop=True)


def _time(microseconds: Any) -> pd.Series:
    """Microseconds since the epoch (float, NaN for missing) as UTC datetimes."""
    us = pd.Series(microseconds, dtype="float64").round().astype("Int64")
    return pd.to_datetime(us, unit="us", utc=True)


def _floats(series: pd.Series) -> np.ndarray[Any, np.dtype[np.float64]]:
    return series.to_numpy(dtype="float64", na_value=np.nan)


def _job_order(jobs: pd.DataFrame, job_pk: pd.Series, time: pd.Series | None = None) -> Any:
    """Positions that order child rows by their job's place in ``jobs``, then by time;
    rows of jobs not in ``jobs`` are left out."""
    rank = pd.Index(jobs["job_pk"]).get_indexer(pd.Index(job_pk.to_numpy("int64")))
    keys = (rank,) if time is None else (_floats(time), rank)
    order = np.lexsort(keys)
    return order[rank[order] >= 0]


def _attach(jobs: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Prefix child rows (with ``job_pk``) by their job's ``source`` and ``job_id``."""
    keys = jobs.set_index("job_pk")[["source", "job_id"]]
    pos = keys.index.get_indexer(pd.Index(rows["job_pk"].to_numpy("int64")))
    named = pd.DataFrame({n: keys[n].take(pos).to_numpy() for n in keys.columns}, index=rows.index)
    return pd.concat([named, rows], axis=1)


# --- figures --------------------------------------------------------------------------------


def _transition_estimates(raw: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The estimate (µs) and ± (s) of each transition: see "Transition times"."""
    obs, prev = _floats(raw["observed_at"]), _floats(raw["previous_observed_at"])
    first = np.isnan(prev)
    estimate = np.where(first, obs, np.floor((obs + prev) / 2))
    return pd.Series(estimate, index=raw.index), pd.Series((obs - prev) / 2 / _US, index=raw.index)


def _stays(jobs: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """Each stay in a status (internal: times in µs), from the status history."""
    h = raw.iloc[_job_order(jobs, raw["job_pk"], raw["observed_at"])].reset_index(drop=True)
    entered, unc = _transition_estimates(h)
    pk = h["job_pk"].to_numpy("int64")
    last = np.ones(len(h), dtype=bool)
    last[:-1] = pk[1:] != pk[:-1]
    left = np.where(last, np.nan, np.roll(entered.to_numpy(), -1))
    left_unc = np.where(last, np.nan, np.roll(unc.to_numpy(), -1))
    last_seen = _us(jobs.set_index("job_pk")["last_seen_at"]).reindex(pk).to_numpy()
    terminal = h["to_status"].isin(TERMINAL_STATUSES).to_numpy(bool)
    end = np.where(last, np.where(terminal, np.nan, last_seen), left)
    return pd.DataFrame(
        {
            "job_pk": pk,
            "status": h["to_status"],
            "entered_at": _time(entered),
            "entered_uncertainty_s": unc,
            "left_at": _time(left),
            "left_uncertainty_s": left_unc,
            "current": last,
            "seconds": (end - entered.to_numpy()) / _US,
        }
    )


def _us(times: pd.Series) -> pd.Series:
    """UTC datetimes as float microseconds since the epoch (NaN for NaT)."""
    values = times.astype("datetime64[us, UTC]").dt.tz_localize(None).to_numpy("datetime64[us]")
    us = values.astype("int64").astype("float64")
    us[np.isnat(values)] = np.nan
    return pd.Series(us, index=times.index)


def _changed(values: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Where a value differs from the row before (NaN equal to NaN)."""
    before = np.empty_like(values)
    before[:1], before[1:] = np.nan, values[:-1]
    same: np.ndarray[Any, np.dtype[np.bool_]] = (values == before) | (
        np.isnan(values) & np.isnan(before)
    )
    changed: np.ndarray[Any, np.dtype[np.bool_]] = ~same
    return changed


def _intervals(p: pd.DataFrame) -> pd.DataFrame:
    """Throughput intervals (internal: times in µs) from sorted progress rows."""
    pk, running = p["job_pk"].to_numpy("int64"), p["running"].to_numpy("int64") == 1
    tokens, steps = _floats(p["trained_tokens"]), _floats(p["trained_steps"])
    at = _floats(p["first_observed_at"])
    after_running = np.zeros(len(pk), dtype=bool)
    after_running[1:] = running[:-1] & (pk[1:] == pk[:-1])
    moved = _changed(tokens) | _changed(steps)
    stretch_start = running & ~after_running
    point = (running & (stretch_start | moved)) | (~running & after_running & moved)
    stretch = np.cumsum(stretch_start)
    idx = np.flatnonzero(point)
    a, b = idx[:-1], idx[1:]
    keep = running[a] & (pk[a] == pk[b]) & (stretch[a] == stretch[b]) & (at[b] > at[a])
    a, b = a[keep], b[keep]
    seconds = (at[b] - at[a]) / _US
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


def _summary(
    conn: Connection, conds: Sequence[ColumnElement[bool]], jobs: pd.DataFrame
) -> pd.DataFrame:
    """The throughput summary of ``jobs`` (internal: keeps ``job_pk``)."""
    progress = _progress_rows(conn, conds)
    stays = _stays(jobs, _history_rows(conn, conds))
    out = jobs.set_index("job_pk")
    for status, name in (("queued", "queued_s"), ("running", "running_s")):
        out[name] = stays[stays["status"] == status].groupby("job_pk")["seconds"].sum(min_count=1)
    runs = stays[stays["status"] == "running"]
    first = runs.drop_duplicates("job_pk", keep="first").set_index("job_pk")
    last = runs.drop_duplicates("job_pk", keep="last").set_index("job_pk")
    out["started_at"] = first["entered_at"]
    out["start_uncertainty_s"] = first["entered_uncertainty_s"]
    ended = ~last["current"]
    out["ended_at"] = last["left_at"].where(ended)
    out["end_uncertainty_s"] = last["left_uncertainty_s"].where(ended)
    speeds = _intervals(progress).groupby("job_pk")["tokens_per_s"]
    out["median_tokens_per_s"], out["peak_tokens_per_s"] = speeds.median(), speeds.max()
    out["intervals"] = speeds.size().reindex(out.index, fill_value=0)
    tokens, steps = out["trained_tokens"].astype("Float64"), out["trained_steps"].astype("Float64")
    out["mean_tokens_per_s"] = tokens / out["running_s"].where(out["running_s"] > 0)
    out["tokens_per_step"] = tokens / steps.where(steps > 0)
    estimates = pd.Series(_floats(progress["estimated_finish"]), index=progress["job_pk"])
    estimates = estimates[progress["running"].to_numpy("int64") == 1].groupby(level=0)
    succeeded = (out["status"] == "succeeded").to_numpy(dtype=bool, na_value=False)
    finished = _us(out["finished_at"]).where(succeeded)
    out["finish_estimate_error_s"] = (estimates.last() - finished) / _US
    out["first_finish_estimate_error_s"] = (estimates.first() - finished) / _US
    return out.reset_index()


def _canonical(value: Any) -> str:
    """A JSON column's value (parsed by psycopg, text on SQLite) as canonical JSON text."""
    return canonical_json((json.loads(value) if isinstance(value, str) else value) or {})


def _json_object(text: Any) -> dict[str, Any]:
    value = json.loads(str(text))
    return value if isinstance(value, dict) else {}


def _plain(value: Any) -> Any:
    """A Python scalar for a pandas/numpy one; NA stays NA."""
    if pd.isna(value):
        return pd.NA
    return value.item() if isinstance(value, np.generic) else value


def _key(value: Any) -> str:
    return canonical_json(None if value is pd.NA else value)
