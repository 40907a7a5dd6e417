"""The output formats, by the name ``--format`` takes: one vocabulary for every command.

Kept apart from :mod:`ftlog.export` (which writes them) so that command modules can name
them in their help without importing pandas.
"""

from __future__ import annotations

from typing import Literal

FORMATS = {
    "table": "aligned, for reading",
    "csv": "",
    "json": "an array of objects",
    "jsonl": "one object per line",
    "parquet": "typed columns",
}
"""Every output format, and what it is. Each command offers those that fit it."""
FileFormat = Literal["csv", "json", "jsonl", "parquet"]
FILE_FORMATS: tuple[FileFormat, ...] = ("csv", "json", "jsonl", "parquet")
"""The formats written to a file (or a pipe) by :func:`ftlog.export.write_frame`."""
SUFFIXES: dict[str, FileFormat] = {
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
"""The format a file name's suffix means."""
