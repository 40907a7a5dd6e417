"""Writing DataFrames out: CSV, JSON lines, JSON records and terminal tables.

Conventions, the same in every format:

* **Times** are ISO 8601 in UTC with a ``Z`` suffix: ``2026-01-01T12:00:00Z``. A column whose
  values carry fractions of a second is written with microseconds
  (``2026-01-01T12:00:00.250000Z``), the whole column alike. Naive times are taken as UTC.
  Durations (timedeltas) are written as seconds.
* **Money** (``estimated_cost``, any ``*cost`` column) is rounded to the cent, amounts below
  a cent to two significant digits (:func:`round_money`): estimates, not ledger entries.
  Every other number is written exactly.
* **Nulls** are empty cells in CSV and ``null`` in JSON.
* **CSV** is UTF-8 and RFC 4180: comma-separated, CRLF line ends, a header row always.
* **Objects and arrays** inside a cell (raw JSON columns) are written as compact JSON text in
  CSV and as nested JSON in JSON lines.

CSV injection: a spreadsheet treats a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return as a formula. Following the OWASP recommendation
(https://owasp.org/www-community/attacks/CSV_Injection), such **text** cells, header names
included, get a single quote ``'`` prefixed, which spreadsheets show but do not evaluate.
Numbers are never touched (a negative number stays a number). ``escape=False`` writes the
text verbatim, for programs rather than spreadsheets. JSON lines are never escaped.

The work is vectorized: pandas' own column operations and ``.str`` methods, no per-cell loops
(except converting the cells of object/array columns to JSON text, which are few and small;
JSON lines are encoded one row at a time by the standard library, for exact floats).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ftlog.errors import UsageProblem
from ftlog.formats import FILE_FORMATS, SUFFIXES, FileFormat
from ftlog.parse import load_json

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""Leading characters that make a spreadsheet evaluate a cell (OWASP)."""
_SECONDS = "%Y-%m-%dT%H:%M:%SZ"
_MICROSECONDS = "%Y-%m-%dT%H:%M:%S.%fZ"
_THOUSANDS = r"\B(?=(\d{3})+(?!\d))"
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"
"""Control characters (line breaks, terminal escapes) are blanked in terminal tables."""
_TEXTUAL = frozenset({"string", "mixed", "mixed-integer"})
IDENTIFIERS = frozenset({"seed"})
"""Number columns that name something rather than count it (with every ``*_id``)."""


def infer_format(path: str | Path | None, fmt: str | None) -> FileFormat:
    """``fmt`` if given, else the format ``path``'s suffix names (:data:`SUFFIXES`), else
    csv for stdout (``-`` or None). A file name without a known suffix is an error: a
    ``.json`` file silently holding CSV helps nobody."""
    if fmt is not None:
        if fmt not in FILE_FORMATS:
            raise UsageProblem(f"unknown format {fmt!r}; use {', '.join(FILE_FORMATS)}")
        return fmt
    if path is None or str(path) == "-":
        return "csv"
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageProblem(
            f"cannot tell a format from the name {path}: end it in "
            f"{', '.join(SUFFIXES)}, or give --format {'|'.join(FILE_FORMATS)}"
        )
    return SUFFIXES[suffix]


def write_frame(
    frame: pd.DataFrame,
    path: str | Path | None = None,
    fmt: FileFormat | None = None,
    *,
    escape: bool = True,
    json_columns: Collection[str] = (),
) -> None:
    """Write ``frame`` to ``path`` (``-`` or None: stdout) in ``fmt``, else the format its
    suffix names (:func:`infer_format`).

    A named index (as in a comparison) becomes the first column. ``escape`` neutralizes
    formula-like text cells in CSV (see the module docstring). ``json_columns`` hold JSON
    text (an event's ``data``): objects in JSON and JSON lines, text in CSV and Parquet.
    """
    fmt = infer_format(path, fmt)
    target = None if path is None or str(path) == "-" else Path(path)
    if fmt == "parquet":
        if target is None and sys.stdout.isatty():
            raise UsageProblem("Parquet is binary: write it to a file (-o FILE.parquet) or a pipe")
        _write(to_parquet(frame), target)
    elif fmt == "csv":
        _write(to_csv(frame, escape=escape), target)
    elif fmt == "json":
        _write(to_json_records(frame, json_columns) + "\n", target)
    else:
        _write(to_jsonl(frame, json_columns), target)


def _write(data: str | bytes, target: Path | None) -> None:
    """``data`` into ``target``, or onto stdout for None."""
    if target is None:
        if isinstance(data, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(data)
            sys.stdout.flush()
        return
    try:
        if isinstance(data, bytes):
            target.write_bytes(data)
        else:
            with target.open("w", encoding="utf-8", newline="") as out:
                out.write(data)
    except OSError as err:
        raise UsageProblem(f"cannot write {target}: {err.strerror or err}") from None


def to_csv(frame: pd.DataFrame, *, escape: bool = True) -> str:
    """The frame as CSV text: RFC 4180 (CRLF line ends, so a cell holding a lone carriage
    return is quoted too), a header row even when there are no rows."""
    out = _plain(frame, nested_as_text=True)
    if escape:
        out = out.apply(_neutralize)
        out.columns = pd.Index(_neutralize(pd.Series(out.columns, dtype=object)).tolist())
    return out.to_csv(index=False, na_rep="", lineterminator="\r\n")


def to_jsonl(frame: pd.DataFrame, json_columns: Collection[str] = ()) -> str:
    """The frame as JSON lines: one object per row, ``null`` for nulls; ``json_columns``
    (JSON text) nested as objects."""
    return "".join(_dumps(record) + "\n" for record in _records(frame, json_columns))


def to_json_records(frame: pd.DataFrame, json_columns: Collection[str] = ()) -> str:
    """The frame as an indented JSON array of objects (for ``--format json``);
    ``json_columns`` (JSON text) nested as objects."""
    return json.dumps(_records(frame, json_columns), indent=2, ensure_ascii=False, default=str)


def to_parquet(frame: pd.DataFrame) -> bytes:
    """The frame as Parquet, its columns typed (times as UTC timestamps, nullable numbers).

    Needs pyarrow (the ``parquet`` extra). Columns that mix kinds of values (a comparison's
    jobs) are written as text, as in CSV.
    """
    import io

    try:
        import pyarrow  # noqa: F401  # pandas' engine, imported here to name the extra
    except ImportError:
        raise UsageProblem("writing Parquet needs pyarrow: pip install 'ftlog[parquet]'") from None
    out = _money_rounded(_index_as_column(frame))
    out.columns = pd.Index([str(name) for name in out.columns])
    for name in out.columns:
        column = out[name]
        if column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) not in (
            "string",
            "empty",
        ):
            out[name] = column.map(_cell_text, na_action="ignore").astype("string")
    buffer = io.BytesIO()
    out.to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()


def _cell_text(value: Any) -> str:
    value = json_value(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _records(frame: pd.DataFrame, json_columns: Collection[str] = ()) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values (floats keep their shortest exact form), the
    JSON text of ``json_columns`` parsed."""
    plain = _plain(frame)
    for name in set(json_columns) & set(plain.columns):
        plain[name] = plain[name].astype(object).map(load_json, na_action="ignore")
    nullable = plain.astype(object).where(plain.notna(), None)
    return nullable.to_dict(orient="records")  # type: ignore[return-value]


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


def json_value(value: Any) -> Any:
    """One value as JSON would hold it: ISO time, None for nulls, Python numbers."""
    if value is None or (not isinstance(value, (list, dict, str)) and bool(pd.isna(value))):
        return None
    if isinstance(value, pd.Timestamp):
        stamp = value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
        return stamp.strftime(_MICROSECONDS if stamp.microsecond else _SECONDS)
    if isinstance(value, pd.Timedelta):
        return value.total_seconds()
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- terminal tables -------------------------------------------------------------------------


def format_table(frame: pd.DataFrame, *, max_width: int = 40) -> str:
    """A plain-text table: aligned columns, numbers right-aligned.

    Integers (and floats that are all whole, such as token counts) get thousands
    separators; rates (``*_per_s``) and other numbers one decimal (``1,234.5``) or, when
    all are below 1, three significant digits (a learning rate stays ``1e-05``); costs
    (``*cost``) as money (:func:`format_money`); losses and accuracies (``*_loss``,
    ``*_accuracy``) with four decimals; numbers that name something (``seed``, ``*_id``)
    as they are, without separators; durations in seconds (``*_s``, ``seconds``) show as
    ``h:mm:ss`` and their header says so (``running_s (h:mm:ss)``); times are shortened to
    the minute, in UTC, and their header says so (``created_at (UTC)``); flags show as
    yes/no; text longer than ``max_width`` is cut with ``…`` and control characters are
    blanked; nulls show as ``-``.
    """
    frame = _index_as_column(frame)
    if frame.columns.empty:
        return "(nothing to show)"
    cells: dict[str, pd.Series] = {}
    right: dict[str, bool] = {}
    for name in frame.columns:
        header = str(name) + _unit(frame[name], str(name))
        cells[header], right[header] = _format_column(frame[name], max_width, str(name))
    headers = list(cells)
    widths = {h: max(len(h), int(cells[h].str.len().max() or 0)) for h in headers}
    lines = [
        "  ".join(h.rjust(widths[h]) if right[h] else h.ljust(widths[h]) for h in headers),
        "  ".join("-" * widths[h] for h in headers),
    ]
    padded = [
        cells[h].str.rjust(widths[h]) if right[h] else cells[h].str.ljust(widths[h])
        for h in headers
    ]
    if len(frame):
        joined = padded[0]
        for column in padded[1:]:
            joined = joined + "  " + column
        lines.extend(joined.str.rstrip().tolist())
    return "\n".join(line.rstrip() for line in lines)


def format_comparison(frame: pd.DataFrame, *, max_width: int = 40) -> str:
    """A table whose rows are named quantities and whose columns are jobs (a comparison):
    each row is formatted by its name, as :func:`format_table` formats a column."""
    rows = {}
    for name, values in frame.iterrows():
        column = pd.Series(list(values)).infer_objects()
        rows[str(name) + _unit(column, str(name))] = _format_column(column, max_width, str(name))[0]
    cells = pd.DataFrame(rows).T
    cells.columns = pd.Index([str(c) for c in frame.columns])
    cells.index.name = frame.index.name or "name"
    return format_table(cells, max_width=max_width)


def format_fields(fields: dict[str, Any], *, max_width: int = 80) -> str:
    """``name: value`` lines, names aligned, values formatted as in :func:`format_table`."""
    if not fields:
        return "(nothing to show)"
    cells = {}
    for name, value in fields.items():
        cell = pd.Series([value], dtype=object if isinstance(value, (list, dict)) else None)
        cell = cell.infer_objects()
        cells[name + _unit(cell, name)] = _format_column(cell, max_width, name)[0].iloc[0]
    width = max(len(label) for label in cells)
    return "\n".join(f"{label.ljust(width)}  {text}" for label, text in cells.items())


def _unit(column: pd.Series, name: str) -> str:
    """What a table header adds to a column's name so that its cells read right: durations
    in seconds show as ``h:mm:ss``, times in UTC to the minute."""
    if _is_duration(name) and pd.api.types.is_numeric_dtype(column.dtype):
        return "" if pd.api.types.is_bool_dtype(column.dtype) else " (h:mm:ss)"
    if pd.api.types.is_timedelta64_dtype(column.dtype):
        return " (h:mm:ss)"
    if pd.api.types.is_datetime64_any_dtype(column.dtype) or (
        column.dtype == object
        and pd.api.types.infer_dtype(column, skipna=True) in ("datetime", "datetime64")
    ):
        return " (UTC)"
    if name in _UTC_DATES:
        return " (UTC)"
    return ""


_UTC_DATES = frozenset({"period", "day"})
"""Columns of dates as text (trends' periods, cost by day), which are UTC dates."""


def _is_identifier(name: str) -> bool:
    """A number that names something (a seed, an id): shown without thousands separators."""
    return name in IDENTIFIERS or name.endswith("_id")


def _is_duration(name: str) -> bool:
    return name == "seconds" or (name.endswith("_s") and not name.endswith("_per_s"))


def _format_column(column: pd.Series, max_width: int, name: str = "") -> tuple[pd.Series, bool]:
    """The column's cells as display strings, and whether to right-align them."""
    present = column.notna()
    numeric = pd.api.types.is_numeric_dtype(column.dtype)
    if numeric and not pd.api.types.is_bool_dtype(column.dtype) and _is_duration(name):
        text = _format_durations(column.astype("float64"))
        return text.astype(object).where(present, "-").astype(str), True
    if pd.api.types.is_bool_dtype(column.dtype):
        text = column.map({True: "yes", False: "no"})
        right = False
    elif pd.api.types.is_datetime64_any_dtype(column.dtype):
        text = _utc(column).dt.strftime("%Y-%m-%d %H:%M")
        right = False
    elif pd.api.types.is_timedelta64_dtype(column.dtype):
        text, right = _format_durations(column.dt.total_seconds()), True
    elif numeric and is_money(name):
        text, right = column.astype("float64").map(format_money, na_action="ignore"), True
    elif numeric and name.endswith(("_loss", "_accuracy")):
        text, right = column.astype("float64").map("{:.4f}".format, na_action="ignore"), True
    elif numeric and _is_identifier(name):
        whole = column if pd.api.types.is_integer_dtype(column.dtype) else column.round()
        text, right = whole.astype("Int64").map(str, na_action="ignore"), True
    elif pd.api.types.is_integer_dtype(column.dtype):
        text, right = column.map("{:,}".format, na_action="ignore"), True  # exact, any size
    elif numeric:
        rate = name.endswith("_per_s")
        text, right = _format_numbers(column.astype("float64"), whole_as_int=not rate), True
    elif isinstance(column.dtype, pd.StringDtype):
        text, right = _shorten(column.str.replace(_CONTROL, " ", regex=True), max_width), False
    else:
        grouped = not _is_identifier(name)
        values = column.map(lambda v: _format_value(v, max_width, grouped), na_action="ignore")
        text, right = values.astype(object), bool(present.any()) and _all_numbers(column)
    return text.astype(object).where(present, "-").astype(str), right


def format_money(amount: float) -> str:
    """An amount of money: two decimals (``1,234.50``), two significant digits below a
    cent (``0.0012``) so that a small cost does not read as nothing."""
    if amount != 0 and abs(amount) < 0.01:
        return f"{amount:.2g}"
    return f"{amount:,.2f}"


def _shorten(text: pd.Series, max_width: int) -> pd.Series:
    long = text.str.len() > max_width
    return text.where(~long, text.str.slice(0, max_width - 1) + "…")


def _format_numbers(values: pd.Series, *, whole_as_int: bool = True) -> pd.Series:
    values = values.where(np.isfinite(values))
    finite = values.dropna()
    exact = finite.abs().max() < 2.0**53  # beyond, "whole" floats only look whole
    if finite.empty or (whole_as_int and exact and (finite == finite.round()).all()):
        return values.round().astype("Int64").astype(str).str.replace(_THOUSANDS, ",", regex=True)
    if finite.abs().max() < 1:
        return values.map(compact_number, na_action="ignore")
    return values.map("{:,.1f}".format, na_action="ignore")


def _format_durations(seconds: pd.Series) -> pd.Series:
    """Seconds as ``h:mm:ss`` (``-0:05:00`` for a negative span), vectorized."""
    seconds = seconds.where(np.isfinite(seconds)).round()
    whole = seconds.abs().astype("Int64")
    sign = pd.Series(np.where(seconds < 0, "-", ""), index=seconds.index, dtype=str)
    hours = (whole // 3600).astype(str)
    minutes = (whole % 3600 // 60).astype(str).str.zfill(2)
    secs = (whole % 60).astype(str).str.zfill(2)
    text: pd.Series[str] = sign + hours + ":" + minutes + ":" + secs
    return text


def _all_numbers(column: pd.Series) -> bool:
    kind = pd.api.types.infer_dtype(column, skipna=True)
    return kind in ("integer", "floating", "mixed-integer-float", "decimal")


def _format_value(value: Any, max_width: int, grouped: bool = True) -> str:
    """One cell of an object column (a comparison mixes numbers, flags and text)."""
    if isinstance(value, datetime):
        moment = pd.Timestamp(value)
        stamp = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
        return str(stamp.strftime("%Y-%m-%d %H:%M"))
    value = json_value(value)
    if value is None:
        return "-"
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, int):
        text = f"{value:,}" if grouped else str(value)
    elif isinstance(value, float):
        text = f"{value:,.0f}" if value.is_integer() and abs(value) >= 1 else _float_text(value)
    elif isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(value)
    text = re.sub(_CONTROL, " ", text)
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def _float_text(value: float) -> str:
    return compact_number(value) if abs(value) < 1 else f"{value:,.1f}"


def compact_number(value: float) -> str:
    """Three significant digits, small values alike in scientific notation: ``1e-5``,
    ``3e-5``, ``1e-4`` (not ``0.0001`` beside ``1e-05``); ``0.531`` from 0.01 up."""
    if value == 0 or abs(value) >= 0.01:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


# --- shared preparation ----------------------------------------------------------------------


def _index_as_column(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame on a fresh 0..n-1 index; an index that means something (it has a name)
    becomes the first column, any other is dropped."""
    named = any(name is not None for name in frame.index.names)
    return frame.reset_index(drop=not named)


def is_money(name: str) -> bool:
    """Whether a column holds amounts of money (``estimated_cost``, any ``*cost``)."""
    return name.endswith("cost")


def round_money(amount: float) -> float:
    """An amount as files hold it: to the cent, or two significant digits below a cent
    (as :func:`format_money` shows it), so that 16.462774900000003 is written 16.46."""
    if amount != 0 and abs(amount) < 0.01:
        return float(f"{amount:.2g}")
    return round(amount, 2)


def _money_rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its money columns (numbers) rounded by :func:`round_money`."""
    money = [
        name
        for name in frame.columns
        if is_money(str(name)) and pd.api.types.is_float_dtype(frame[name].dtype)
    ]
    if not money:
        return frame
    out = frame.copy()
    for name in money:
        out[name] = frame[name].map(round_money, na_action="ignore").astype(frame[name].dtype)
    return out


def _plain(frame: pd.DataFrame, *, nested_as_text: bool = False) -> pd.DataFrame:
    """Times as ISO text, durations as seconds, categories as values; index as a column."""
    frame = _money_rounded(_index_as_column(frame))
    converted: dict[Any, pd.Series] = {}
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            column = column.astype(object)
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            column = _iso(_utc(column))
        elif pd.api.types.is_timedelta64_dtype(column.dtype):
            column = column.dt.total_seconds()
        elif column.dtype == object:
            column = _plain_objects(column, nested_as_text)
        converted[name] = column
    out = pd.DataFrame(converted, index=pd.RangeIndex(len(frame)))
    out.columns = pd.Index([str(name) for name in frame.columns])
    return out


def _plain_objects(column: pd.Series, nested_as_text: bool) -> pd.Series:
    kind = pd.api.types.infer_dtype(column, skipna=True)
    if kind in ("datetime", "datetime64"):
        return _iso(pd.to_datetime(column, utc=True, format="ISO8601"))
    if kind == "mixed" and nested_as_text:
        nested: Callable[[Any], Any] = _nested_text
        return column.map(nested, na_action="ignore")
    return column


def _nested_text(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return value


def _utc(column: pd.Series) -> pd.Series:
    dt: Any = column.dt  # pandas-stubs type the accessor loosely
    utc: pd.Series = dt.tz_localize("UTC") if dt.tz is None else dt.tz_convert("UTC")
    return utc


def _iso(column: pd.Series) -> pd.Series:
    """ISO 8601 UTC text; microseconds only in a column that has fractions of a second."""
    dt: Any = column.dt
    fractional = bool((dt.microsecond.fillna(0) != 0).any())
    text: pd.Series = dt.strftime(_MICROSECONDS if fractional else _SECONDS).astype(object)
    return text


def _neutralize(column: pd.Series) -> pd.Series:
    """Prefix ``'`` to text cells starting with a formula character; other cells untouched."""
    if column.dtype != object and not isinstance(column.dtype, pd.StringDtype):
        return column
    if pd.api.types.infer_dtype(column, skipna=True) not in _TEXTUAL:
        return column  # numbers, flags or nothing but nulls
    risky = column.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)
    if not risky.any():
        return column
    return column.astype(object).where(~risky, "'" + column[risky].astype(str))
