"""Plain INSERTs of many rows through the driver's ``executemany``: the first-sync hot path.

A first sync writes five rows per job (the job, its hyperparameters, its raw object, its
first snapshot and its first sighting) for thousands of jobs. Through SQLAlchemy Core each
value of each row passes its type's bind processing in Python, which costs more than the
database's own work. Here each table's INSERT is compiled once per dialect and the values are
converted once per column, by kind, into what the driver takes:

- times (``UTCDateTime``): on SQLite, the text SQLAlchemy itself stores
  (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC), so reads and comparisons see one format; on Postgres,
  the aware datetime;
- JSON: its ``json.dumps`` text, None as SQL NULL (the models' ``none_as_null``);
- anything else as it is.

Plain INSERTs come here, and on Postgres the creation of jobs new to the store (an INSERT
that skips conflicts and returns what it created); upserts stay in SQLAlchemy Core.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Connection, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from ftlog.schema import UTCDateTime

Convert = Callable[[Any], Any]


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT ``rows`` (dicts with the same keys) into ``table`` in one ``executemany``."""
    if not rows:
        return
    sql, pairs, positional = _statement(conn, table, tuple(rows[0]))
    columns = [_column(rows, name, convert) for name, convert in pairs]
    if positional:
        params: list[Any] = list(zip(*columns, strict=True))
    else:
        names = [name for name, _ in pairs]
        params = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    conn.exec_driver_sql(sql, params)


def insert_new_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    unique: Sequence[str],
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """Postgres: ``INSERT ... ON CONFLICT (unique) DO NOTHING RETURNING returning`` of
    ``rows``, through psycopg's ``executemany(returning=True)`` (pipelined); the returned
    columns of the rows it created (those a concurrent writer created first are skipped)."""
    if not rows:
        return []
    columns = tuple(rows[0])
    key = (conn.dialect.name, f"{table.name} new {unique} {returning}", columns)
    found = _statements.get(key)
    if found is None:
        stmt = (
            postgresql.insert(table)
            .on_conflict_do_nothing(index_elements=list(unique))
            .returning(*(table.c[name] for name in returning))
        )
        compiled = stmt.compile(dialect=conn.dialect, column_keys=list(columns))
        pairs = [(name, _converter(table.c[name].type, sqlite=False)) for name in columns]
        found = _statements[key] = (str(compiled), pairs, False)
    sql, pairs, _ = found
    values = [_column(rows, name, convert) for name, convert in pairs]
    names = [name for name, _ in pairs]
    params = [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
    driver = conn.connection.driver_connection
    assert driver is not None
    created: list[tuple[Any, ...]] = []
    try:
        with driver.cursor() as cursor:
            cursor.executemany(sql, params, returning=True)
            while True:
                created.extend(cursor.fetchall())
                if not cursor.nextset():
                    break
    except conn.dialect.loaded_dbapi.Error as err:
        # As SQLAlchemy would have raised it, for the callers' handling of refused batches.
        raise DBAPIError.instance(sql, params, err, conn.dialect.loaded_dbapi.Error) from err
    return created


def _column(rows: Sequence[dict[str, Any]], name: str, convert: Convert) -> list[Any]:
    """One column's values, converted (column by column: the loops run in C)."""
    values = map(itemgetter(name), rows)
    if convert is _same:
        return list(values)
    if convert in _TIMES:  # a batch's rows share most of their times: convert each once
        seen: dict[Any, Any] = {}
        return [seen[v] if v in seen else seen.setdefault(v, convert(v)) for v in values]
    return list(map(convert, values))


Pairs = list[tuple[str, Convert]]
_statements: dict[tuple[str, str, tuple[str, ...]], tuple[str, Pairs, bool]] = {}


def _statement(conn: Connection, table: Table, columns: tuple[str, ...]) -> tuple[str, Pairs, bool]:
    """The INSERT's SQL for these columns, each parameter's (name, converter) in the order
    the driver takes them, and whether it takes them by position."""
    key = (conn.dialect.name, table.name, columns)
    found = _statements.get(key)
    if found is None:
        compiled = table.insert().compile(dialect=conn.dialect, column_keys=list(columns))
        order = list(compiled.positiontup) if compiled.positiontup is not None else columns
        sqlite = conn.dialect.name == "sqlite"
        pairs = [(name, _converter(table.c[name].type, sqlite)) for name in order]
        found = (str(compiled), pairs, compiled.positiontup is not None)
        _statements[key] = found
    return found


def _converter(kind: Any, sqlite: bool) -> Convert:
    if isinstance(kind, UTCDateTime):
        return _sqlite_time if sqlite else _utc
    if isinstance(kind, JSON):
        return _json
    return _same


def _same(value: Any) -> Any:
    return value


def _json(value: Any) -> str | None:
    if value is None:
        return None
    if not value and isinstance(value, list | dict):  # most are: no integrations, no extra
        return "[]" if isinstance(value, list) else "{}"
    return json.dumps(value)


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return None if value is None else value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _sqlite_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC and value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


_TIMES: frozenset[Convert] = frozenset({_sqlite_time, _utc})
