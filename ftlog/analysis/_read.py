"""Reading the store: filters as SQL, one read transaction, rows from the cursor, typed frames.

The building blocks of every loader in :mod:`ftlog.analysis`; nothing here is public API.
Internally times are float microseconds since the epoch (NaN for missing) until a frame is
made public (:func:`public`), which gives every column its documented dtype.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any, Literal, TypedDict

import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    FromClause,
    Table,
    cast,
    extract,
    select,
)

from ftlog.db import open_store
from ftlog.errors import UsageProblem
from ftlog.filters import recorded_models, recorded_sources, selected_names
from ftlog.models import (
    Checkpoint,
    Event,
    Hyperparameters,
    Job,
    Snapshot,
    Source,
    StatusChangeRow,
    UTCDateTime,
    table,
)
from ftlog.parse import canonical_json, load_json
from ftlog.times import TimeError, to_utc

StoreLike = str | Engine | None
"""A database URL or SQLite path, an engine, or None for the default store."""


class Filters(TypedDict, total=False):
    """The filters every loader accepts; see the :mod:`ftlog.analysis` docstring."""

    job_ids: Iterable[str] | None
    source: str | None
    model: str | None
    status: str | Iterable[str] | None
    since: datetime | str | None
    until: datetime | str | None


jobs_table = table(Job)
sources_table = table(Source)
hyper_table = table(Hyperparameters)
snapshots_table = table(Snapshot)
history_table = table(StatusChangeRow)
events_table = table(Event)
checkpoints_table = table(Checkpoint)

Kind = Literal["str", "int", "float", "bool", "time", "json"]
DTYPES: dict[Kind, str] = {
    "str": "string",
    "int": "Int64",
    "float": "Float64",
    "bool": "boolean",
    "time": "datetime64[us, UTC]",
    "json": "string",
}
"""The pandas dtype of each kind of column; ``json`` is canonical JSON text."""
US = 1_000_000


def columns(spec: str) -> dict[str, Kind]:
    """``"name name:kind ..."`` as {name: kind}; the kind is "str" unless given."""
    pairs = (f"{word}:str".split(":")[:2] for word in spec.split())
    return typing.cast("dict[str, Kind]", dict(pairs))


JOB_COLUMNS = columns(
    "source job_id model status created_at:time finished_at:time training_file validation_file"
    " suffix seed:int organization_id error_code error_message error_param trained_tokens:int"
    " trained_steps:int total_steps:int estimated_finish:time fine_tuned_model method_type"
    " first_seen_at:time last_seen_at:time"
)


@contextmanager
def reading(
    store: StoreLike, filters: Filters
) -> Iterator[tuple[Connection, list[ColumnElement[bool]], pd.DataFrame]]:
    """The filters as WHERE clauses, a connection in one read transaction (so the several
    queries of a function see the same data) and the selected jobs.

    A URL or path must name an existing ftlog store: a reader never creates one."""
    checked = checked_filters(filters)
    with connected(store) as conn:
        conds = conditions(checked, conn)
        yield conn, conds, load_job_rows(conn, conds)


@contextmanager
def connected(store: StoreLike) -> Iterator[Connection]:
    """A connection to ``store`` in one read transaction (read-only on Postgres)."""
    with ExitStack() as stack:
        engine = store if isinstance(store, Engine) else stack.enter_context(open_store(store))
        conn = stack.enter_context(engine.connect())
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        stack.enter_context(conn.begin())
        yield conn


def checked_filters(filters: Filters) -> Filters:
    """``filters`` with ``since``/``until`` as aware UTC datetimes; TypeError for an unknown
    filter, UsageProblem for a time outside the grammar (before any store is opened)."""
    unknown = set(filters) - set(Filters.__annotations__)
    if unknown:
        raise TypeError(f"unknown filter {', '.join(sorted(unknown))}")
    checked = Filters(**filters)
    if (since := filters.get("since")) is not None:
        checked["since"] = utc(since, "since")
    if (until := filters.get("until")) is not None:
        checked["until"] = utc(until, "until")
    return checked


def conditions(filters: Filters, conn: Connection) -> list[ColumnElement[bool]]:
    """The filters as WHERE clauses on ``jobs`` joined with ``sources``; a model or source
    pattern is matched against the names ``conn``'s store holds (:mod:`ftlog.filters`)."""
    filters = checked_filters(filters)
    jobs = jobs_table.c
    conds: list[ColumnElement[bool]] = []
    if (job_ids := filters.get("job_ids")) is not None:
        conds.append(jobs.job_id.in_([job_ids] if isinstance(job_ids, str) else list(job_ids)))
    if (source := filters.get("source")) is not None:
        conds.append(sources_table.c.name.in_(selected_names(source, conn, recorded_sources)))
    if (model := filters.get("model")) is not None:
        conds.append(jobs.model.in_(selected_names(model, conn, recorded_models)))
    if (status := filters.get("status")) is not None:
        conds.append(jobs.status.in_([status] if isinstance(status, str) else list(status)))
    if (since := filters.get("since")) is not None:
        conds.append(jobs.created_at >= since)
    if (until := filters.get("until")) is not None:
        conds.append(jobs.created_at < until)
    return conds


def utc(value: datetime | str, name: str) -> datetime:
    """``since``/``until`` as an aware UTC datetime: a datetime (naive means UTC) or text of
    :mod:`ftlog.times`' grammar (ISO date or time, ``Z`` or an offset, a span: ``7d``)."""
    try:
        return to_utc(value)
    except TimeError as err:
        raise UsageProblem(f"{name}: {err}") from None


def fetch(
    conn: Connection, selected: Sequence[Any], source: FromClause, conds: Sequence[Any]
) -> pd.DataFrame:
    """Rows as the driver gives them, but times as float µs since the epoch (NaN for NULL).

    This is the hot path (a million snapshots). The rows are taken from the DBAPI cursor as
    plain tuples: SQLAlchemy's Row objects and its per-value datetime processing would cost
    more than the query. Times are read as text on SQLite (SQLAlchemy's ISO format, parsed
    by pandas in one go) and as integer microseconds computed by Postgres.
    """
    postgres = conn.dialect.name == "postgresql"
    names = [c.name for c in selected]
    timed = [
        cast(extract("epoch", c) * US, BigInteger).label(c.name)
        if postgres and c.name in TIME_COLUMNS
        else c
        for c in selected
    ]
    result = conn.execute(select(*timed).select_from(source).where(*conds))
    try:
        rows = result.cursor.fetchall()
    finally:
        result.close()
    frame = pd.DataFrame.from_records(rows, columns=names)
    for position, name in enumerate(names):
        if name not in TIME_COLUMNS and _beyond_float_precision(frame[name]):
            frame[name] = pd.Series([row[position] for row in rows], dtype=object)
    for name in frame.columns.intersection(list(TIME_COLUMNS)):
        values = frame[name]
        if values.dtype.kind not in "iuf":
            values = to_us(pd.to_datetime(values, format="ISO8601", utc=True))
        frame[name] = values.to_numpy(dtype="float64", na_value=np.nan)
    return frame


def _beyond_float_precision(values: pd.Series) -> bool:
    """Whether pandas read an integer column holding NULLs as float64 and lost digits: an
    integer beyond 2**53 (2**53 + 1 would read as 2**53, int64's maximum would not cast back)."""
    if values.dtype != np.float64 or not values.hasnans:
        return False
    return bool(values.abs().max() >= 2.0**53)  # max skips NaN; all NaN gives NaN


TIME_COLUMNS = frozenset(
    c.name
    for table in (jobs_table, snapshots_table, history_table, events_table, checkpoints_table)
    for c in table.columns
    if isinstance(c.type, UTCDateTime)
)
"""Column names :func:`fetch` reads as times (a name means a time in every table)."""


def job_rows(conds: Sequence[ColumnElement[bool]], table: Table) -> list[ColumnElement[bool]]:
    """Restrict a child table to the selected jobs, by a subquery on jobs and sources."""
    if not conds:
        return []
    return [table.c.job_pk.in_(select(jobs_table.c.id).join(sources_table).where(*conds))]


def load_job_rows(conn: Connection, conds: Sequence[ColumnElement[bool]]) -> pd.DataFrame:
    """The selected jobs, typed, ordered, with their primary key in ``job_pk``."""
    selected: list[Any] = [sources_table.c.name.label("source"), jobs_table.c.id.label("job_pk")]
    selected += [jobs_table.c[n] for n in JOB_COLUMNS if n != "source"]
    raw = fetch(conn, selected, jobs_table.join(sources_table), conds)
    raw = raw.sort_values(["created_at", "source", "job_id"], kind="stable", ignore_index=True)
    jobs = typed(raw, JOB_COLUMNS)
    jobs["job_pk"] = raw["job_pk"].astype("int64")
    return jobs


def child(
    conn: Connection,
    jobs: pd.DataFrame,
    table: Table,
    conds: Sequence[ColumnElement[bool]],
    kinds: dict[str, Kind],
    *order: str,
) -> pd.DataFrame:
    """The ``kinds`` columns of a table keyed by ``job_pk``, typed, named by job, and in
    job order, then by the ``order`` columns (table columns; ties in fetch order)."""
    wanted = dict.fromkeys(n for n in ("job_pk", *kinds, *order) if n not in ("source", "job_id"))
    raw = fetch(conn, [table.c[n] for n in wanted], table, job_rows(conds, table))
    raw = raw.iloc[job_order(jobs, raw["job_pk"], *(raw[n] for n in order))]
    return public(attach(jobs, raw), kinds)


# --- shaping --------------------------------------------------------------------------------


def typed(raw: pd.DataFrame, kinds: dict[str, Kind]) -> pd.DataFrame:
    out: dict[str, Any] = {}
    for name, kind in kinds.items():
        col = raw[name]
        if kind == "time" and col.dtype.kind != "M":
            out[name] = as_time(col)
        elif kind == "json":
            out[name] = col.map(canonical).astype("string")
        else:
            out[name] = col.astype(DTYPES[kind])  # type: ignore[call-overload]
    return pd.DataFrame(out, index=raw.index)


def public(frame: pd.DataFrame, kinds: dict[str, Kind]) -> pd.DataFrame:
    """The documented columns only, in order and with their dtypes, on a fresh 0..n-1 index."""
    return typed(frame[list(kinds)], kinds).reset_index(drop=True)


def as_time(microseconds: Any) -> pd.Series:
    """Microseconds since the epoch (float, NaN for missing) as UTC datetimes."""
    us = pd.Series(microseconds, dtype="float64").round().astype("Int64")
    return pd.to_datetime(us, unit="us", utc=True)


def floats(series: pd.Series) -> np.ndarray[Any, np.dtype[np.float64]]:
    return series.to_numpy(dtype="float64", na_value=np.nan)


def job_order(jobs: pd.DataFrame, job_pk: pd.Series, *keys: pd.Series) -> Any:
    """Positions that order child rows by their job's place in ``jobs``, then by each of
    ``keys`` (numbers or µs; NaN last); rows of jobs not in ``jobs`` are left out."""
    rank = pd.Index(jobs["job_pk"]).get_indexer(pd.Index(job_pk.to_numpy("int64")))
    order = np.lexsort((*(floats(k) for k in reversed(keys)), rank))
    return order[rank[order] >= 0]


def attach(jobs: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Prefix child rows (with ``job_pk``) by their job's ``source`` and ``job_id``."""
    keys = jobs.set_index("job_pk")[["source", "job_id"]]
    pos = keys.index.get_indexer(pd.Index(rows["job_pk"].to_numpy("int64")))
    named = pd.DataFrame({n: keys[n].take(pos).to_numpy() for n in keys.columns}, index=rows.index)
    return pd.concat([named, rows], axis=1)


def to_us(times: pd.Series) -> pd.Series:
    """UTC datetimes as float microseconds since the epoch (NaN for NaT)."""
    values = times.astype("datetime64[us, UTC]").dt.tz_localize(None).to_numpy("datetime64[us]")
    us = values.astype("int64").astype("float64")
    us[np.isnat(values)] = np.nan
    return pd.Series(us, index=times.index)


def canonical(value: Any) -> str | None:
    """A JSON column's value (parsed by psycopg, text on SQLite) as canonical JSON text;
    None for SQL NULL and JSON null."""
    if not isinstance(value, str | dict | list) and pd.isna(value):
        return None  # SQL NULL, as the frame holds it (None, NaN or NA)
    parsed = load_json(value) if isinstance(value, str) else value
    return None if parsed is None else canonical_json(parsed)


def json_object(text: Any) -> dict[str, Any]:
    value = load_json(str(text))
    return value if isinstance(value, dict) else {}


def plain(value: Any) -> Any:
    """A Python scalar for a pandas/numpy one; NA stays NA."""
    if pd.isna(value):
        return pd.NA
    return value.item() if isinstance(value, np.generic) else value


def sort_key(value: Any) -> str:
    return canonical_json(None if value is pd.NA else value)
