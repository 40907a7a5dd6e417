"""ftlog.export: CSV safe for spreadsheets, JSON lines, JSON records and terminal tables."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ftlog import export
from ftlog.errors import UsageProblem


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_neutralizes_formula_text(prefix: str) -> None:
    frame = pd.DataFrame({"job_id": ["ftjob-1"], "suffix": [f"{prefix}HYPERLINK(1)"]})
    rows = _rows(export.to_csv(frame))
    assert rows[1] == ["ftjob-1", f"'{prefix}HYPERLINK(1)"]


def test_csv_quotes_line_breaks_inside_cells() -> None:
    frame = pd.DataFrame({"message": ["a\rb", "c\nd"], "n": [1, 2]})
    assert _rows(export.to_csv(frame))[1:] == [["a\rb", "1"], ["c\nd", "2"]]


def test_csv_leaves_safe_text_and_nulls_alone() -> None:
    frame = pd.DataFrame({"text": ["plain", "a=b", None, "'quoted"]})
    assert _rows(export.to_csv(frame))[1:] == [["plain"], ["a=b"], [""], ["'quoted"]]


def test_csv_never_touches_numbers() -> None:
    frame = pd.DataFrame(
        {
            "delta": [-5, 3],
            "rate": [-0.5, 1e-5],
            "tokens": pd.array([-1000, None], dtype="Int64"),
            # A comparison column mixes numbers and text: only the text is escaped.
            "mixed": [-2.5, "-auto"],
        }
    )
    rows = _rows(export.to_csv(frame))
    assert rows[1] == ["-5", "-0.5", "-1000", "-2.5"]
    assert rows[2] == ["3", "1e-05", "", "'-auto"]


def test_csv_escapes_header_names() -> None:
    frame = pd.DataFrame({"=evil": ["x"], "job_id": ["y"]})
    assert _rows(export.to_csv(frame))[0] == ["'=evil", "job_id"]


def test_csv_no_escape_writes_text_verbatim() -> None:
    frame = pd.DataFrame({"=h": ["=1+2", "@x", "-y"]})
    rows = _rows(export.to_csv(frame, escape=False))
    assert rows == [["=h"], ["=1+2"], ["@x"], ["-y"]]


def test_csv_times_are_iso_utc_and_nested_values_json() -> None:
    frame = pd.DataFrame(
        {
            "at": pd.to_datetime(pd.Series(["2026-01-01T12:00:00+02:00", None]), utc=True),
            "naive": pd.to_datetime(["2026-01-01 12:00:00", "2026-01-02 00:00:00"]),
            "fine": pd.to_datetime(
                ["2026-01-01T00:00:00.25Z", "2026-01-01T00:00:01Z"], format="ISO8601"
            ),
            "spent": pd.to_timedelta([90, 1.5], unit="s"),
            "extra": [{"scheduler": "cosine"}, None],
        }
    )
    rows = _rows(export.to_csv(frame))
    assert rows[1] == [
        "2026-01-01T10:00:00Z",
        "2026-01-01T12:00:00Z",
        "2026-01-01T00:00:00.250000Z",
        "90.0",
        '{"scheduler":"cosine"}',
    ]
    assert rows[2] == ["", "2026-01-02T00:00:00Z", "2026-01-01T00:00:01.000000Z", "1.5", ""]


def test_csv_of_an_empty_frame_is_its_header() -> None:
    frame = pd.DataFrame({"job_id": pd.Series(dtype=str), "at": pd.Series(dtype="datetime64[us]")})
    assert export.to_csv(frame) == "job_id,at\r\n"


def test_named_index_becomes_the_first_column() -> None:
    frame = pd.DataFrame({"ftjob-a": [1e-5], "ftjob-b": [2e-5]}, index=["learning_rate"])
    frame.index.name = "hyperparameter"
    assert _rows(export.to_csv(frame)) == [
        ["hyperparameter", "ftjob-a", "ftjob-b"],
        ["learning_rate", "1e-05", "2e-05"],
    ]


def test_rows_keep_their_order_whatever_the_index() -> None:
    frame = pd.DataFrame(
        {"n": [3, 1, 2], "at": pd.to_datetime(["2026-01-03", "2026-01-01", "2026-01-02"], utc=True)}
    )
    shuffled = frame.sort_values("at").iloc[1:]  # index labels [2, 0]: not 0..n-1
    assert [r["n"] for r in json.loads(export.to_json_records(shuffled))] == [2, 3]
    assert [json.loads(line)["n"] for line in export.to_jsonl(shuffled).splitlines()] == [2, 3]
    assert [r[0] for r in _rows(export.to_csv(shuffled))[1:]] == ["2", "3"]
    assert [line.split()[0] for line in export.format_table(shuffled).splitlines()[2:]] == [
        "2",
        "3",
    ]


def test_jsonl_round_trips() -> None:
    frame = pd.DataFrame(
        {
            "job_id": ["ftjob-1", "=x", "a/b"],
            "tokens": pd.array([1234567890123, None, 0], dtype="Int64"),
            "rate": [0.1 + 0.2, np.nan, -3.5],
            "lora": [True, False, None],
            "at": pd.to_datetime(pd.Series(["2026-01-01T00:00:00Z", None, "2026-03-01T10:30:00Z"])),
            "extra": [{"k": [1, 2]}, None, {}],
        }
    )
    lines = export.to_jsonl(frame).splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert records[0] == {
        "job_id": "ftjob-1",
        "tokens": 1234567890123,
        "rate": 0.1 + 0.2,
        "lora": True,
        "at": "2026-01-01T00:00:00Z",
        "extra": {"k": [1, 2]},
    }
    nulls = dict.fromkeys(["tokens", "rate", "at", "extra"])
    assert records[1] == nulls | {"job_id": "=x", "lora": False}
    assert records[2]["job_id"] == "a/b" and '"a/b"' in lines[2]
    back = pd.read_json(io.StringIO(export.to_jsonl(frame)), lines=True)
    assert list(back.columns) == list(frame.columns)
    assert back["job_id"].tolist() == ["ftjob-1", "=x", "a/b"]


def test_jsonl_of_an_empty_frame_is_empty() -> None:
    assert export.to_jsonl(pd.DataFrame({"job_id": pd.Series(dtype=str)})) == ""


def test_json_records_is_an_array() -> None:
    frame = pd.DataFrame({"job_id": ["a"], "n": [np.int64(3)]})
    assert json.loads(export.to_json_records(frame)) == [{"job_id": "a", "n": 3}]
    assert json.loads(export.to_json_records(frame.iloc[:0])) == []


def test_write_frame_to_file_and_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.DataFrame({"job_id": ["=a"]})
    target = tmp_path / "out.csv"
    export.write_frame(frame, target)
    assert target.read_bytes() == b"job_id\r\n'=a\r\n"
    export.write_frame(frame, "-", "jsonl")
    assert capsys.readouterr().out == '{"job_id":"=a"}\n'
    with pytest.raises(UsageProblem, match="cannot write"):
        export.write_frame(frame, tmp_path / "missing" / "out.csv")


@pytest.mark.parametrize(
    ("path", "fmt", "expected"),
    [
        ("a.csv", None, "csv"),
        ("a.jsonl", None, "jsonl"),
        ("A.NDJSON", None, "jsonl"),
        ("-", None, "csv"),
        ("a.csv", "jsonl", "jsonl"),
        ("a.jsonl", "csv", "csv"),
    ],
)
def test_infer_format(path: str, fmt: str | None, expected: str) -> None:
    assert export.infer_format(path, fmt) == expected


def test_table_formats_numbers_times_and_text() -> None:
    frame = pd.DataFrame(
        {
            "job_id": ["ftjob-a", "ftjob-b"],
            "trained_tokens": [1234567.0, np.nan],
            "tokens_per_s": [1234.56, 0.5],
            "learning_rate": [1e-5, 2e-5],
            "created_at": pd.to_datetime(["2026-01-01T12:34:56Z", "2026-01-02T00:00:00Z"]),
            "error_message": ["x" * 100, "bad\x1b[31m\nline"],
        }
    )
    lines = export.format_table(frame, max_width=20).splitlines()
    assert [h.strip() for h in lines[0].split("  ") if h.strip()] == [
        "job_id",
        "trained_tokens",
        "tokens_per_s",
        "learning_rate",
        "created_at (UTC)",
        "error_message",
    ]
    assert set(lines[1]) == {"-", " "}
    assert "ftjob-a" in lines[2] and "1,234,567" in lines[2] and "1,234.6" in lines[2]
    assert "1e-5" in lines[2] and "2026-01-01 12:34" in lines[2] and ":56" not in lines[2]
    assert "x" * 19 + "…" in lines[2] and "x" * 20 not in lines[2]
    assert "\x1b" not in lines[3] and "bad [31m line" in lines[3]
    # Numbers are right-aligned: the token column ends at the same place on every line.
    end = lines[0].index("trained_tokens") + len("trained_tokens")
    assert lines[2][:end].endswith("1,234,567") and lines[3][:end].endswith("-")


def test_table_of_a_comparison_mixes_types() -> None:
    frame = pd.DataFrame(
        {"ftjob-a": [1e-5, 8, True, None], "ftjob-b": [2e-5, 16, False, "cosine"]},
        index=pd.Index(["learning_rate", "batch_size", "lora", "scheduler"], name="hyperparameter"),
    )
    text = export.format_table(frame)
    assert text.splitlines()[0].split() == ["hyperparameter", "ftjob-a", "ftjob-b"]
    assert "yes" in text and "no" in text and "cosine" in text and "16" in text


def test_format_fields() -> None:
    text = export.format_fields(
        {"trained_tokens": 12345, "at": pd.Timestamp("2026-01-01T12:00:30Z"), "error": None}
    )
    assert text.splitlines() == [
        "trained_tokens  12,345",
        "at (UTC)        2026-01-01 12:00",
        "error           -",
    ]


def test_comparison_table_formats_each_row_by_its_name() -> None:
    frame = pd.DataFrame(
        {"ftjob-a": [1e-5, 1.5, 12_000.25, 0.5308], "ftjob-b": [1e-4, 3725.0, 9_000.0, 0.6]},
        index=pd.Index(
            ["learning_rate", "running_s", "mean_tokens_per_s", "final_valid_loss"], name="name"
        ),
    )
    lines = export.format_comparison(frame).splitlines()
    cells = {line.split("  ")[0].strip(): line.split()[-2:] for line in lines[2:]}
    assert cells["learning_rate"] == ["1e-5", "1e-4"]
    assert cells["running_s (h:mm:ss)"] == ["0:00:02", "1:02:05"]
    assert cells["mean_tokens_per_s"] == ["12,000.2", "9,000.0"]
    assert cells["final_valid_loss"] == ["0.5308", "0.6000"]


# --- units and precision ---------------------------------------------------------------------


def test_money_is_written_to_the_cent() -> None:
    frame = pd.DataFrame(
        {
            "job_id": ["a", "b", "c", "d"],
            "estimated_cost": pd.array([16.462774900000003, 0.0012345, 1234.5, None], "Float64"),
            "mean_tokens_per_s": [1234.5678, 1.0, 2.0, 3.0],
        }
    )
    rows = list(csv.reader(io.StringIO(export.to_csv(frame), newline="")))
    # To the cent; below a cent two significant digits; other numbers untouched.
    assert [row[1] for row in rows[1:]] == ["16.46", "0.0012", "1234.5", ""]
    assert rows[1][2] == "1234.5678"
    records = [json.loads(line) for line in export.to_jsonl(frame).splitlines()]
    assert [r["estimated_cost"] for r in records] == [16.46, 0.0012, 1234.5, None]
    table = export.format_table(frame).splitlines()
    assert table[2].split()[1] == "16.46" and table[4].split()[1] == "1,234.50"


def test_tables_name_the_unit_of_durations_and_times() -> None:
    frame = pd.DataFrame(
        {
            "running_s": [82.0, 3725.0],
            "seconds": [1.0, 2.0],
            "tokens_per_s": [1.5, 2.5],
            "at": pd.to_datetime(["2026-01-01T12:34:56Z", "2026-01-02T00:00:00Z"]),
        }
    )
    lines = export.format_table(frame).splitlines()
    assert [h.strip() for h in lines[0].split("  ") if h.strip()] == [
        "running_s (h:mm:ss)", "seconds (h:mm:ss)", "tokens_per_s", "at (UTC)",
    ]  # fmt: skip
    assert lines[2].split()[:2] == ["0:01:22", "0:00:01"] and "2026-01-01 12:34" in lines[2]
    # The CSV holds seconds and ISO times, as the column names say.
    rows = list(csv.reader(io.StringIO(export.to_csv(frame), newline="")))
    assert rows[1] == ["82.0", "1.0", "1.5", "2026-01-01T12:34:56Z"]


def test_identifiers_have_no_thousands_separators() -> None:
    frame = pd.DataFrame(
        {"seed": pd.array([1_924_014_660, None], "Int64"), "trained_tokens": [1_924_014_660, 5]}
    )
    lines = export.format_table(frame).splitlines()
    assert lines[2].split() == ["1924014660", "1,924,014,660"]
    assert export.format_fields({"seed": 1_924_014_660}) == "seed  1924014660"
    compared = pd.DataFrame(
        {"ftjob-a": [1_924_014_660, 8], "ftjob-b": [None, 16]},
        index=pd.Index(["seed", "batch_size"], name="name"),
    )
    assert "1924014660" in export.format_comparison(compared)
