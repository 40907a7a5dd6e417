"""``ftlog demo``: the quick demo end to end, and what it does with its output folder."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from ftlog import analysis
from ftlog.cli import main
from ftlog.cli.report import EXPORTS as REPORT_EXPORTS
from ftlog.demo import run as demo
from ftlog.models import TERMINAL_STATUSES

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JOB_IDS = [job.id for job in demo.demo_jobs()]
EXPORT_COLUMNS = {
    "jobs": analysis.JOB_COLUMNS,
    "hyperparameters": analysis.HYPERPARAMETER_COLUMNS,
    "snapshots": analysis.SNAPSHOT_COLUMNS,
    "status-history": analysis.STATUS_HISTORY_COLUMNS,
    "throughput": analysis.THROUGHPUT_COLUMNS,
    "throughput-summary": analysis.SUMMARY_COLUMNS,
    "runs": analysis.RUN_COLUMNS,
    "events": analysis.EVENT_COLUMNS,
    "checkpoints": analysis.CHECKPOINT_COLUMNS,
    "loss-curves": analysis.LOSS_CURVE_COLUMNS,
}
"""The documented columns of each export but the comparison (one column per hyperparameter
that differs) and the trends (one row per day and model, not per job)."""
FAILED_EARLY = {job.id for job in demo.demo_jobs() if job.outcome == "failed"}
"""The job that fails before its first checkpoint or loss report."""


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """One quick demo run through the CLI, shared by the tests that read what it wrote."""
    output = tmp_path_factory.mktemp("demo") / "out"
    result = CliRunner().invoke(main, ["demo", "--quick", "-o", str(output)])
    return output, result


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def test_quick_demo_succeeds_and_reports(quick_demo: tuple[Path, Result]) -> None:
    output, result = quick_demo
    assert result.exit_code == 0, result.output
    # progress on stderr: the header, transitions as they happen, the closing line
    assert "simulated API at http://127.0.0.1:" in result.stderr
    assert "queued → running" in result.stderr
    assert "running → failed" in result.stderr
    assert f"all {len(JOB_IDS)} jobs finished" in result.stderr
    # the report on stdout
    out = result.stdout
    assert "Throughput, as ftlog measured it" in out
    assert "Hyperparameters that differ" in out
    assert "mean_tokens_per_s" in out and "succeeded" in out and "out_of_memory" in out
    assert all(job_id in out for job_id in JOB_IDS)
    assert "What next" in out and f"ftlog jobs --db {output}" in out
    assert "ftlog show ftjob-" in out and "ftlog compare ftjob-" in out


@pytest.mark.parametrize("name", sorted(EXPORT_COLUMNS))
def test_quick_demo_writes_every_export(quick_demo: tuple[Path, Result], name: str) -> None:
    output, _ = quick_demo
    header, rows = _rows(output / f"{name}.csv")
    assert header == list(EXPORT_COLUMNS[name])
    early = FAILED_EARLY if name == "checkpoints" else set()  # it failed before the first
    assert {row["job_id"] for row in rows} == set(JOB_IDS) - early
    assert {row["source"] for row in rows} == {demo.SOURCE}


def test_quick_demo_writes_the_comparison(quick_demo: tuple[Path, Result]) -> None:
    output, _ = quick_demo
    header, rows = _rows(output / "comparison.csv")
    assert header[:2] == ["source", "job_id"]
    assert {row["job_id"] for row in rows} == set(JOB_IDS)
    assert {"learning_rate", "batch_size", "lora", "status", "mean_tokens_per_s"} <= set(header)
    assert all(float(row["mean_tokens_per_s"]) > 1000 for row in rows)
    header, rows = _rows(output / "trends.csv")
    assert header == list(analysis.TREND_COLUMNS)
    assert sum(int(row["jobs"]) for row in rows) == len(JOB_IDS)


def test_quick_demo_draws_the_plots(quick_demo: tuple[Path, Result]) -> None:
    pytest.importorskip("matplotlib")
    output, _ = quick_demo
    for name in demo.PLOTS:
        data = (output / f"{name}.png").read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000, name


def test_quick_demo_store_holds_every_life(quick_demo: tuple[Path, Result]) -> None:
    output, _ = quick_demo
    store = str(output / demo.DB_NAME)
    jobs = analysis.load_jobs(store).set_index("job_id")
    expected = {job.id: job.outcome for job in demo.demo_jobs()}
    assert jobs["status"].to_dict() == expected
    assert set(jobs["status"]) <= TERMINAL_STATUSES
    history = analysis.load_status_history(store)
    for job_id, outcome in expected.items():
        changes = history[history["job_id"] == job_id]
        steps = list(zip(changes["from_status"].fillna("-"), changes["to_status"], strict=True))
        assert ("queued", "running") in steps, (job_id, steps)
        assert ("running", outcome) in steps, (job_id, steps)
    summary = analysis.throughput_summary(store).set_index("job_id")
    assert (summary.loc[JOB_IDS, "intervals"] > 0).all()
    assert sorted(path.name for path in output.iterdir()) == sorted(
        name for name in demo.DEMO_FILES if not name.endswith(("-wal", "-shm"))
    )


def test_quick_demo_store_is_on_one_clock(quick_demo: tuple[Path, Result]) -> None:
    """The API's timestamps and ftlog's observations agree: every change is seen after the
    job was created, each job's finished_at lies in the poll where ftlog saw it end, and the
    time queued is what the simulated job was given, to the transitions' uncertainty."""
    output, _ = quick_demo
    store = str(output / demo.DB_NAME)
    jobs = _by_job(analysis.load_jobs(store))
    summary = _by_job(analysis.throughput_summary(store))
    history = analysis.load_status_history(store)
    poll = timedelta(seconds=demo.POLL_SIMULATED_SECONDS)
    for job in demo.demo_jobs():
        created, finished = jobs[job.id]["created_at"], jobs[job.id]["finished_at"]
        changes = _by_job(history[history["job_id"] == job.id], key="to_status")
        assert all(change["observed_at"] >= created for change in changes.values()), job.id
        end = changes[job.outcome]
        assert end["previous_observed_at"] - poll <= finished <= end["observed_at"], job.id
        # the simulated job: validating, then queued, then running from `started`
        queued = job.queued * 60
        started = created + timedelta(minutes=job.validating + job.queued)
        start = changes["running"]
        assert start["previous_observed_at"] - poll <= started <= start["observed_at"], job.id
        slack = changes["queued"]["uncertainty_s"] + start["uncertainty_s"] + 1
        assert abs(summary[job.id]["queued_s"] - queued) <= slack, job.id
        assert abs((summary[job.id]["started_at"] - started).total_seconds()) <= slack, job.id


def _by_job(frame: pd.DataFrame, key: str = "job_id") -> dict[str, dict[str, Any]]:
    """One record per ``key`` value (the last, if several)."""
    return {str(row[key]): {str(k): v for k, v in row.items()} for row in frame.to_dict("records")}


def test_the_demo_exports_what_ftlog_export_does() -> None:
    assert set(demo.EXPORTS) == set(REPORT_EXPORTS) - {"cost"}  # the simulator has no prices


def test_a_foreign_folder_is_refused(tmp_path: Path) -> None:
    output = tmp_path / "mine"
    output.mkdir()
    (output / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["demo", "--quick", "-o", str(output)])
    assert result.exit_code == 2
    assert "is not empty and holds no earlier demo" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in output.iterdir()) == ["notes.txt"]


def test_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = CliRunner().invoke(main, ["demo", "--quick", "-o", str(target)])
    assert result.exit_code == 2
    assert target.read_text() == "x"


def test_an_earlier_demo_is_replaced_and_other_files_kept(tmp_path: Path) -> None:
    output = tmp_path / "ftlog-demo"
    output.mkdir()
    for name in (demo.MARKER, demo.DB_NAME, "jobs.csv", "compare.png", "mine.txt"):
        (output / name).write_text("old")
    demo.prepare_output(output)
    assert sorted(p.name for p in output.iterdir()) == sorted([demo.MARKER, "mine.txt"])
    assert (output / demo.MARKER).read_text() != "old"


def test_an_empty_or_missing_folder_is_used(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    demo.prepare_output(empty)
    demo.prepare_output(tmp_path / "new" / "nested")
    assert (empty / demo.MARKER).is_file()
    assert (tmp_path / "new" / "nested" / demo.MARKER).is_file()


def test_learning_rates_read_as_written() -> None:
    assert [demo.learning_rate_text(v) for v in (1e-5, 3e-5, 1e-4, 2.5e-5)] == [
        "1e-5",
        "3e-5",
        "1e-4",
        "2.5e-5",
    ]
