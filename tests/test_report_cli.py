"""ftlog jobs / show / throughput / compare / export / plot, on SQLite and Postgres."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from ftlog.cli import main
from ftlog.parse import parse_job
from ftlog.store import Observation, ensure_source, save_observations
from tests.helpers import one_line_error

BASE = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
EVIL_MODEL = '=HYPERLINK("http://x","y")'
EXPORT_COLUMNS = {
    "jobs": ["source", "job_id", "model", "status", "created_at", "finished_at", "suffix",
             "error_code", "error_message", "error_param", "trained_tokens", "trained_steps",
             "first_seen_at", "last_seen_at"],
    "hyperparameters": ["source", "job_id", "batch_size", "learning_rate", "n_epochs", "lora",
                        "extra"],
    "snapshots": ["source", "job_id", "status", "trained_tokens", "trained_steps",
                  "first_observed_at", "last_observed_at"],
    "status-history": ["source", "job_id", "from_status", "to_status", "observed_at",
                       "previous_observed_at"],
    "throughput": ["source", "job_id", "start", "end", "seconds", "tokens", "steps",
                   "tokens_per_s", "steps_per_s"],
    "throughput-summary": ["source", "job_id", "trained_tokens", "queued_s", "running_s",
                           "mean_tokens_per_s", "median_tokens_per_s", "peak_tokens_per_s"],
}  # fmt: skip
"""The columns each export is documented to carry (a subset: exports may add more)."""


def _job(job_id: str, status: str, tokens: int | None, **extra: Any) -> dict[str, Any]:
    hyper = extra.pop("hyperparameters", {"learning_rate": 1e-5, "batch_size": 8, "lora": True})
    return {
        "id": job_id,
        "object": "fine_tuning.job",
        "model": "meta-llama/Llama-3.1-8B",
        "status": status,
        "created_at": int(BASE.timestamp()),
        "trained_tokens": tokens,
        "trained_steps": None if tokens is None else tokens // 100,
        "total_steps": 150,
        "hyperparameters": {"n_epochs": 3, **hyper},
        **extra,
    }


def _observations() -> list[Observation]:
    """Two jobs that train at different speeds, and a failed one full of formula text."""
    steps: list[tuple[int, dict[str, Any]]] = [
        (0, _job("ftjob-fast", "queued", None)),
        (10, _job("ftjob-fast", "running", 0)),
        (20, _job("ftjob-fast", "running", 6_000)),
        (30, _job("ftjob-fast", "running", 12_000)),
        (40, _job("ftjob-fast", "succeeded", 15_000, finished_at=int(BASE.timestamp()) + 2400)),
        (0, _job("ftjob-slow", "queued", None, hyperparameters={"learning_rate": 2e-5,
                                                               "batch_size": 16, "lora": False})),
        (15, _job("ftjob-slow", "running", 0, hyperparameters={"learning_rate": 2e-5,
                                                              "batch_size": 16, "lora": False})),
        (35, _job("ftjob-slow", "running", 3_000, hyperparameters={"learning_rate": 2e-5,
                                                                  "batch_size": 16,
                                                                  "lora": False})),
        (5, _job("ftjob-evil", "failed", None, model=EVIL_MODEL, suffix="@SUM(1+1)",
                 error={"code": "-1+1", "message": "+danger", "param": "\tx"})),
    ]  # fmt: skip
    return [Observation(parse_job(obj), BASE + timedelta(minutes=m)) for m, obj in steps]


@pytest.fixture
def history(engine: Engine, db_url: str) -> str:
    """A store with the jobs of _observations(); returns its URL."""
    source_id = ensure_source(engine, "studio", "https://api.example.test/v1")
    save_observations(engine, source_id, _observations())
    return db_url


@pytest.fixture
def empty_store(engine: Engine, db_url: str) -> str:
    return db_url


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


# --- jobs, show, throughput, compare ----------------------------------------------------------


def test_jobs_table_lists_every_job(history: str) -> None:
    result = run("jobs", "--db", history)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["job_id", "model", "status"]
    assert "source" not in lines[0]  # one source only: the column would say nothing
    body = "\n".join(lines[2:])
    for job_id in ("ftjob-fast", "ftjob-slow", "ftjob-evil"):
        assert job_id in body
    assert "15,000" in body  # token counts with thousands separators


def test_jobs_filters(history: str) -> None:
    failed = run("jobs", "--db", history, "--status", "failed", "--format", "json")
    assert [job["job_id"] for job in json.loads(failed.output)] == ["ftjob-evil"]
    several = run("jobs", "--db", history, "--status", "failed", "--status", "running",
                  "--format", "csv")  # fmt: skip
    assert {row["job_id"] for row in _csv_rows(several.output)} == {"ftjob-evil", "ftjob-slow"}
    model = run("jobs", "--db", history, "--model", EVIL_MODEL, "--format", "json")
    assert [job["job_id"] for job in json.loads(model.output)] == ["ftjob-evil"]
    after = run("jobs", "--db", history, "--since", "2026-01-01T10:00:01Z")
    assert after.output.strip() == "(no jobs)"
    at = run("jobs", "--db", history, "--since", "2026-01-01T11:00+01:00", "--format", "json")
    assert len(json.loads(at.output)) == 3  # the same instant: --since includes it
    other = run("jobs", "--db", history, "--source", "other", "--format", "json")
    assert json.loads(other.stdout) == []
    assert other.stderr == "note: no recorded job has source 'other' (recorded: studio)\n"
    until = run("jobs", "--db", history, "--until", "2026-01-02", "--format", "json")
    assert len(json.loads(until.output)) == 3


def test_jobs_rejects_a_bad_time(history: str) -> None:
    result = run("jobs", "--db", history, "--since", "last tuesday")
    assert result.exit_code == 2 and "ISO" in result.output


def test_show_prints_every_section(history: str) -> None:
    result = run("show", "ftjob-fast", "--db", history)
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("Job ftjob-fast")
    for section in ("Hyperparameters", "Status timeline", "Throughput"):
        assert f"\n{section}\n" in text
    assert "learning_rate" in text and "1e-5" in text
    assert "succeeded" in text and "running" in text and "queued" in text
    assert "mean_tokens_per_s" in text and "0:30:00" in text  # running_s as h:mm:ss


def test_show_json(history: str) -> None:
    report = json.loads(run("show", "ftjob-fast", "--db", history, "--format", "json").output)
    assert report["job"]["status"] == "succeeded"
    assert report["job"]["created_at"] == "2026-01-01T10:00:00Z"
    assert report["hyperparameters"]["batch_size"] == 8
    assert [row["to_status"] for row in report["status_history"]] == [
        "queued", "running", "succeeded",
    ]  # fmt: skip
    assert report["job"]["trained_tokens"] == 15_000
    assert report["throughput"]["running_s"] == 1800.0


def test_show_unknown_job_is_aone_line_error(history: str) -> None:
    one_line_error(run("show", "ftjob-nope", "--db", history), "ftjob-nope")


def test_show_needs_source_when_a_job_id_is_in_two(history: str, engine: Engine) -> None:
    other = ensure_source(engine, "mirror", "https://mirror.example.test/v1")
    save_observations(
        engine, other, [Observation(parse_job(_job("ftjob-fast", "queued", None)), BASE)]
    )
    one_line_error(run("show", "ftjob-fast", "--db", history), "mirror", "studio", "--source")
    result = run("show", "ftjob-fast", "--db", history, "--source", "mirror", "--format", "json")
    assert json.loads(result.output)["job"]["status"] == "queued"


def test_throughput_summary_and_intervals(history: str) -> None:
    table = run("throughput", "--db", history)
    assert table.exit_code == 0, table.output
    assert "ftjob-fast" in table.output and "ftjob-slow" in table.output
    rows = _csv_rows(run("throughput", "ftjob-fast", "--db", history, "--format", "csv").output)
    assert [row["job_id"] for row in rows] == ["ftjob-fast"]
    assert float(rows[0]["mean_tokens_per_s"]) > 0
    intervals = _csv_rows(
        run("throughput", "ftjob-fast", "--intervals", "--db", history, "--format", "csv").output
    )
    # the last gain (3,000 tokens, after the last running poll) has no known time: no interval
    assert [row["tokens"] for row in intervals] == ["6000", "6000"]
    assert float(intervals[0]["tokens_per_s"]) == pytest.approx(10.0)


def test_throughput_unknown_job(history: str) -> None:
    one_line_error(run("throughput", "ftjob-fast", "ftjob-nope", "--db", history), "ftjob-nope")


def test_compare_shows_differences_or_all(history: str) -> None:
    result = run("compare", "ftjob-fast", "ftjob-slow", "--db", history, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = {row["job_id"]: row for row in _csv_rows(result.output)}
    assert list(rows) == ["ftjob-fast", "ftjob-slow"]  # one row per job, in the order given
    assert rows["ftjob-fast"]["learning_rate"] == "1e-05"
    assert rows["ftjob-slow"]["batch_size"] == "16"
    assert "n_epochs" not in rows["ftjob-fast"]  # the same in both
    assert "status" in rows["ftjob-fast"]  # outcomes are always there
    every = _csv_rows(run("compare", "ftjob-fast", "ftjob-slow", "--all", "--db", history,
                          "--format", "csv").output)  # fmt: skip
    assert "n_epochs" in every[0]
    table = run("compare", "ftjob-fast", "ftjob-slow", "--db", history).output
    assert table.splitlines()[0].split() == ["name", "ftjob-fast", "ftjob-slow"]


def test_compare_unknown_job(history: str) -> None:
    one_line_error(run("compare", "ftjob-fast", "ftjob-nope", "--db", history), "ftjob-nope")


# --- export -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPORT_COLUMNS))
def test_export_writes_the_documented_columns(history: str, name: str, tmp_path: Path) -> None:
    target = tmp_path / f"{name}.csv"
    result = run("export", name, "-o", str(target), "--db", history)
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8"), newline="")))
    header = rows[0]
    assert [c for c in EXPORT_COLUMNS[name] if c not in header] == []
    assert len(rows) > 1
    assert {"ftjob-fast", "ftjob-slow"} <= {row[header.index("job_id")] for row in rows[1:]}


@pytest.mark.parametrize("name", sorted(EXPORT_COLUMNS))
def test_empty_store_exports_just_the_header(empty_store: str, name: str, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    result = run("export", name, "-o", str(target), "--db", empty_store)
    assert result.exit_code == 0, result.output
    lines = target.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert [c for c in EXPORT_COLUMNS[name] if c not in lines[0].split(",")] == []


def test_export_comparison(history: str) -> None:
    result = run("export", "comparison", "ftjob-fast", "ftjob-slow", "-o", "-", "--db", history)
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.output, newline="")))
    assert rows[0][:2] == ["source", "job_id"] and "learning_rate" in rows[0]
    assert [row[1] for row in rows[1:]] == ["ftjob-fast", "ftjob-slow"]
    one_line_error(
        run("export", "comparison", "ftjob-nope", "ftjob-fast", "-o", "-", "--db", history),
        "ftjob-nope",
    )


def test_export_neutralizes_formulas_unless_told(history: str) -> None:
    escaped = _csv_rows(run("export", "jobs", "ftjob-evil", "-o", "-", "--db", history).output)[0]
    assert escaped["model"] == "'" + EVIL_MODEL
    assert escaped["suffix"] == "'@SUM(1+1)"
    assert escaped["error_code"] == "'-1+1"
    assert escaped["error_message"] == "'+danger"
    assert escaped["error_param"] == "'\tx"
    assert escaped["job_id"] == "ftjob-evil"
    raw = _csv_rows(
        run("export", "jobs", "ftjob-evil", "-o", "-", "--no-escape", "--db", history).output
    )[0]
    assert raw["model"] == EVIL_MODEL and raw["error_param"] == "\tx"


def test_export_jsonl_by_suffix_or_flag(history: str, tmp_path: Path) -> None:
    target = tmp_path / "snapshots.jsonl"
    assert run("export", "snapshots", "-o", str(target), "--db", history).exit_code == 0
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert {r["job_id"] for r in records} == {"ftjob-fast", "ftjob-slow", "ftjob-evil"}
    first = next(r for r in records if r["job_id"] == "ftjob-fast")
    assert first["first_observed_at"] == "2026-01-01T10:00:00Z"
    assert first["trained_tokens"] is None  # queued: nothing trained yet, null not ""
    flagged = run("export", "jobs", "ftjob-evil", "-o", "-", "--format", "jsonl", "--db", history)
    assert json.loads(flagged.output)["model"] == EVIL_MODEL  # JSON is never escaped


def test_export_narrowed_by_job_ids_and_filters(history: str) -> None:
    rows = _csv_rows(
        run("export", "status-history", "ftjob-slow", "-o", "-", "--db", history).output
    )
    assert {row["job_id"] for row in rows} == {"ftjob-slow"}
    failed = _csv_rows(
        run("export", "jobs", "--status", "failed", "-o", "-", "--db", history).output
    )
    assert [row["job_id"] for row in failed] == ["ftjob-evil"]


def test_export_usage_errors(history: str) -> None:
    one_line_error(run("export", "jobs", "ftjob-nope", "-o", "-", "--db", history), "ftjob-nope")
    assert run("export", "jobs", "--all", "-o", "-", "--db", history).exit_code == 2
    assert run("export", "nonsense", "-o", "-", "--db", history).exit_code == 2
    assert run("export", "jobs", "-o", "jobs.txt", "--db", history).exit_code == 2  # no format


# --- plots --------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kind", ["throughput", "compare"])
def test_plot_writes_a_png(history: str, tmp_path: Path, kind: str) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / f"{kind}.png"
    result = run("plot", kind, "ftjob-fast", "ftjob-slow", "-o", str(target), "--db", history)
    assert result.exit_code == 0, result.output
    data = target.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 20_000  # two labelled panels, not an empty canvas


def test_plot_throughput_on_elapsed_time(history: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    target = tmp_path / "t.svg"
    args = ("plot", "throughput", "ftjob-fast", "ftjob-slow", "--elapsed", "-o", str(target))
    assert run(*args, "--db", history).exit_code == 0
    svg = target.read_text(encoding="utf-8")
    assert "lr=1e-5 bs=8" in svg and "lr=2e-5 bs=16" in svg and "no-lora" in svg


def test_plot_errors(history: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.png"
    one_line_error(run("plot", "compare", "ftjob-nope", "-o", str(target), "--db", history),
                    "ftjob-nope")  # fmt: skip
    one_line_error(run("plot", "throughput", "ftjob-fast", "-o", str(tmp_path / "x.doc"),
                        "--db", history), ".doc")  # fmt: skip
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    result = run("plot", "throughput", "ftjob-fast", "-o", str(target), "--db", history)
    assert result.exit_code == 1 and "ftlog[plot]" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not target.exists()


# --- help ---------------------------------------------------------------------------------------

REPORT_COMMANDS = ("jobs", "show", "throughput", "compare", "export", "plot")


def _commands(group: click.Group, names: tuple[str, ...]) -> list[click.Command]:
    found: list[click.Command] = []
    for name in names:
        command = group.get_command(click.Context(group), name)
        assert command is not None, name
        found.append(command)
        if isinstance(command, click.Group):
            found.extend(_commands(command, tuple(command.commands)))
    return found


def test_every_command_and_option_has_help() -> None:
    for command in _commands(main, REPORT_COMMANDS):
        assert command.help, command.name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{command.name} {param.opts}"
        assert run(*_path(command), "--help").exit_code == 0


def _path(command: click.Command) -> tuple[str, ...]:
    if command.name in main.list_commands(click.Context(main)):
        return (str(command.name),)
    return ("plot", str(command.name))
