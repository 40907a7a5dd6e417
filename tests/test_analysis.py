"""The pandas API, on hand-built histories whose figures are known, on SQLite and Postgres.

Three jobs (times in seconds after T0):

- ``job-a`` (source alpha, model llama): queued at 0 and 30; running at 60 with 0 tokens, at
  90 (only the estimate changed), 160 with 1M tokens / 100 steps, 200 (unchanged), 260 with
  3M / 300; succeeded at 300, ``finished_at`` 290. Transitions: queued→running in (30, 60]
  → 45 ± 15; running→succeeded in (260, 300] → 280 ± 20.
- ``job-b`` (beta, qwen, created 3600): first seen running at 3600.123456 with 500 tokens,
  1500 tokens at 3700.123456, still running. Hyperparameters: n_epochs "auto", an extra.
- ``job-c`` (alpha, llama, created 7200): queued at 7200, failed at 7260 → 7230 ± 30.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, event

from ftlog import analysis
from ftlog.errors import UsageProblem
from ftlog.parse import parse_job
from ftlog.store import Observation, ensure_source, save_observations

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TIME = "datetime64[us, UTC]"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job(job_id: str, status: str, created: float, **fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": job_id,
        "object": "fine_tuning.job",
        "model": "llama",
        "status": status,
        "created_at": int(at(created).timestamp()),
        "hyperparameters": {"batch_size": 16, "learning_rate": 1e-4, "n_epochs": 3},
    }
    for name in ("estimated_finish", "finished_at"):
        if name in fields:
            fields[name] = int(at(fields[name]).timestamp())
    obj.update(fields)
    return obj


def record(engine: Engine, source_id: int, seconds: float, obj: dict[str, Any]) -> None:
    save_observations(engine, source_id, [Observation(parse_job(obj), at(seconds))])


def a_at(status: str, tokens: int | None, steps: int | None, **fields: Any) -> dict[str, Any]:
    return job("job-a", status, 0, trained_tokens=tokens, trained_steps=steps, **fields)


@pytest.fixture
def history(engine: Engine) -> Engine:
    alpha = ensure_source(engine, "alpha", "https://alpha.example/v1")
    beta = ensure_source(engine, "beta", "https://beta.example/v1")
    for seconds, obj in [
        (0, a_at("queued", None, None)),
        (30, a_at("queued", None, None)),
        (60, a_at("running", 0, 0, estimated_finish=1000)),
        (90, a_at("running", 0, 0, estimated_finish=1100)),
        (160, a_at("running", 1_000_000, 100, estimated_finish=1100)),
        (200, a_at("running", 1_000_000, 100, estimated_finish=1100)),
        (260, a_at("running", 3_000_000, 300, estimated_finish=280)),
        (300, a_at("succeeded", 3_000_000, 300, finished_at=290)),
    ]:
        record(engine, alpha, seconds, obj)
    hyper_b = {"batch_size": 8, "learning_rate": 1e-4, "n_epochs": "auto", "foo": {"x": 1}}
    for b_seconds, tokens in [(3600.123456, 500), (3700.123456, 1500)]:
        obj = job("job-b", "running", 3600, model="qwen", trained_tokens=tokens)
        record(engine, beta, b_seconds, {**obj, "hyperparameters": hyper_b})
    record(engine, alpha, 7200, job("job-c", "queued", 7200))
    failed = job("job-c", "failed", 7200, error={"code": "oom", "message": "out of memory"})
    record(
        engine,
        alpha,
        7260,
        {**failed, "hyperparameters": {**failed["hyperparameters"], "lora": True}},
    )
    return engine


def rows(frame: pd.DataFrame, job_id: str) -> pd.DataFrame:
    return frame[frame["job_id"] == job_id].reset_index(drop=True)


def test_jobs_are_typed_and_ordered(history: Engine) -> None:
    jobs = analysis.load_jobs(history)
    assert list(jobs.columns) == list(analysis.JOB_COLUMNS)
    assert jobs["job_id"].tolist() == ["job-a", "job-b", "job-c"]
    assert jobs["source"].tolist() == ["alpha", "beta", "alpha"]
    assert_dtypes(jobs, analysis.JOB_COLUMNS)
    a = jobs.iloc[0]
    assert (a["status"], a["trained_tokens"], a["finished_at"]) == ("succeeded", 3_000_000, at(290))
    assert a["first_seen_at"] == at(0) and a["last_seen_at"] == at(300)
    assert pd.isna(a["error_code"]) and jobs.iloc[2]["error_message"] == "out of memory"


def assert_dtypes(frame: pd.DataFrame, kinds: dict[str, Any]) -> None:
    expected = {name: analysis.DTYPES[kind] for name, kind in kinds.items()}
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == expected
    assert "object" not in expected.values()


def test_snapshots_keep_microseconds(history: Engine) -> None:
    snaps = analysis.load_snapshots(history)
    assert_dtypes(snaps, analysis.SNAPSHOT_COLUMNS)
    a = rows(snaps, "job-a")
    assert a["status"].tolist() == [
        "queued",
        "running",
        "running",
        "running",
        "running",
        "succeeded",
    ]
    assert a["observations"].tolist() == [2, 1, 1, 2, 1, 1]
    assert a["first_observed_at"].tolist() == [at(s) for s in (0, 60, 90, 160, 260, 300)]
    assert a["last_observed_at"].iloc[0] == at(30)
    assert pd.isna(a["trained_tokens"].iloc[0]) and a["estimated_finish"].iloc[1] == at(1000)
    b = rows(snaps, "job-b")
    assert b["first_observed_at"].tolist() == [at(3600.123456), at(3700.123456)]


def test_hyperparameters_keep_misfits_and_extras_as_json(history: Engine) -> None:
    hyper = analysis.load_hyperparameters(history)
    assert_dtypes(hyper, analysis.HYPERPARAMETER_COLUMNS)
    b = rows(hyper, "job-b").iloc[0]
    assert b["batch_size"] == 8 and pd.isna(b["n_epochs"]) and pd.isna(b["lora"])
    assert b["extra"] == '{"foo":{"x":1},"n_epochs":"auto"}'
    c = rows(hyper, "job-c").iloc[0]
    assert c["lora"] is True or c["lora"] == True  # noqa: E712 - numpy or Python bool
    assert c["extra"] == "{}" and c["n_epochs"] == 3


def test_status_history_estimates_transition_times(history: Engine) -> None:
    hist = analysis.load_status_history(history)
    assert_dtypes(hist, analysis.STATUS_HISTORY_COLUMNS)
    a = rows(hist, "job-a")
    assert a["from_status"].isna().tolist() == [True, False, False]
    assert a["to_status"].tolist() == ["queued", "running", "succeeded"]
    assert a["estimated_at"].tolist() == [at(0), at(45), at(280)]
    assert a["uncertainty_s"].isna().iloc[0]
    assert a["uncertainty_s"].iloc[1:].tolist() == [15.0, 20.0]
    assert a["previous_observed_at"].iloc[1] == at(30) and a["observed_at"].iloc[1] == at(60)


def test_status_durations(history: Engine) -> None:
    stays = analysis.status_durations(history)
    assert_dtypes(stays, analysis.STATUS_DURATION_COLUMNS)
    a = rows(stays, "job-a")
    assert a["status"].tolist() == ["queued", "running", "succeeded"]
    assert a["entered_at"].tolist() == [at(0), at(45), at(280)]
    assert a["seconds"].iloc[:2].tolist() == [45.0, 235.0]
    assert a["current"].tolist() == [False, False, True]
    assert pd.isna(a["seconds"].iloc[2]) and pd.isna(a["left_at"].iloc[2])
    assert a["left_uncertainty_s"].iloc[:2].tolist() == [15.0, 20.0]
    b = rows(stays, "job-b").iloc[0]
    # Still running: measured up to the last observation; first sighting, so no ±.
    assert b["current"] and b["seconds"] == pytest.approx(100.0)
    assert pd.isna(b["entered_uncertainty_s"]) and pd.isna(b["left_at"])


def test_throughput_intervals(history: Engine) -> None:
    speed = analysis.throughput(history)
    assert_dtypes(speed, analysis.THROUGHPUT_COLUMNS)
    a = rows(speed, "job-a")
    # 60→160 (the estimate-only change at 90 is no progress), 160→260; not queued→running,
    # not the unchanged running→succeeded.
    assert a["start"].tolist() == [at(60), at(160)] and a["end"].tolist() == [at(160), at(260)]
    assert a["tokens"].tolist() == [1_000_000, 2_000_000] and a["steps"].tolist() == [100, 200]
    assert a["tokens_per_s"].tolist() == [10_000.0, 20_000.0]
    assert a["steps_per_s"].tolist() == [1.0, 2.0]
    assert not speed["after_reset"].any()
    b = rows(speed, "job-b")
    assert b["tokens_per_s"].tolist() == [pytest.approx(10.0)]
    assert b["steps"].isna().all()
    assert set(speed["job_id"]) == {"job-a", "job-b"}


def test_throughput_summary(history: Engine) -> None:
    summary = analysis.throughput_summary(history)
    assert_dtypes(summary, analysis.SUMMARY_COLUMNS)
    assert summary["job_id"].tolist() == ["job-a", "job-b", "job-c"]
    a = summary.iloc[0]
    assert (a["queued_s"], a["running_s"]) == (45.0, 235.0)
    # Observed running with progress from 60 (0 tokens) to 260 (3M): 3M / 200 s.
    assert (a["tokens_before_first_seen"], a["observed_tokens"]) == (0, 3_000_000)
    assert a["mean_tokens_per_s"] == 3_000_000 / 200
    assert a["mean_steps_per_s"] == 300 / 200
    assert (a["median_tokens_per_s"], a["peak_tokens_per_s"]) == (15_000.0, 20_000.0)
    assert (a["intervals"], a["resets"], a["tokens_per_step"]) == (2, 0, 10_000.0)
    assert pd.isna(a["eta"])  # not running
    assert (a["started_at"], a["start_uncertainty_s"]) == (at(45), 15.0)
    assert (a["ended_at"], a["end_uncertainty_s"]) == (at(280), 20.0)
    assert a["finished_at"] == at(290)
    assert a["finish_estimate_error_s"] == -10.0  # last estimate 280, finished 290
    assert a["first_finish_estimate_error_s"] == 710.0  # first estimate 1000
    b = summary.iloc[1]
    # first seen running: when it started is unknown (before the first poll), not a time
    assert pd.isna(b["started_at"]) and pd.isna(b["start_uncertainty_s"])
    assert pd.isna(b["ended_at"]) and pd.isna(b["queued_s"])
    # First seen at 500 tokens: those were trained before ftlog looked; 1000 more in 100 s.
    assert (b["tokens_before_first_seen"], b["observed_tokens"]) == (500, 1000)
    assert b["mean_tokens_per_s"] == pytest.approx(10.0)
    assert pd.isna(b["mean_steps_per_s"]) and pd.isna(b["eta"])  # no step counts
    assert pd.isna(b["finish_estimate_error_s"]) and pd.isna(b["tokens_per_step"])
    c = summary.iloc[2]
    assert c["queued_s"] == 30.0 and pd.isna(c["running_s"]) and c["intervals"] == 0
    assert pd.isna(c["mean_tokens_per_s"]) and pd.isna(c["started_at"])
    assert pd.isna(c["observed_tokens"]) and pd.isna(c["tokens_before_first_seen"])


def job_ids(frame: pd.DataFrame) -> list[str]:
    return sorted(set(frame["job_id"]))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"source": "alpha"}, ["job-a", "job-c"]),
        ({"model": "qwen"}, ["job-b"]),
        ({"status": "running"}, ["job-b"]),
        ({"status": ["failed", "succeeded"]}, ["job-a", "job-c"]),
        ({"since": "2025-01-01T01:00:00"}, ["job-b", "job-c"]),
        ({"since": datetime(2025, 1, 1, 1)}, ["job-b", "job-c"]),  # naive = UTC
        ({"until": "2025-01-01T02:00:00+01:00"}, ["job-a"]),
        ({"since": at(3600), "until": at(7200)}, ["job-b"]),
        ({"job_ids": ["job-c", "nope"]}, ["job-c"]),
        ({"job_ids": "job-a"}, ["job-a"]),
        ({"source": "alpha", "status": "running"}, []),
    ],
)
def test_filters(history: Engine, filters: dict[str, Any], expected: list[str]) -> None:
    for load in (
        analysis.load_jobs,
        analysis.load_hyperparameters,
        analysis.load_status_history,
        analysis.status_durations,
        analysis.throughput_summary,
    ):
        assert job_ids(load(history, **filters)) == expected, load.__name__
    # Snapshots and throughput have rows for job-a and job-b only (job-c never ran).
    snaps_expected = [j for j in expected if j != "job-c"]
    assert job_ids(analysis.throughput(history, **filters)) == snaps_expected
    assert job_ids(analysis.load_snapshots(history, **filters)) == expected


@pytest.fixture
def statements(history: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def capture(*args: Any) -> None:
        seen.append(args[2])

    event.listen(history, "before_cursor_execute", capture)
    yield seen
    event.remove(history, "before_cursor_execute", capture)


def test_filters_are_applied_in_sql(history: Engine, statements: list[str]) -> None:
    analysis.throughput_summary(history, source="beta")
    snapshot_query = next(s for s in statements if "FROM snapshots" in s)
    assert "WHERE" in snapshot_query and "sources.name" in snapshot_query


def test_bad_filters() -> None:
    with pytest.raises(UsageProblem, match="since: 'yesterday' is not a time"):
        analysis.load_jobs("sqlite://", since="yesterday")
    with pytest.raises(TypeError, match="unknown filter"):
        analysis.load_jobs("sqlite://", sauce="alpha")  # type: ignore[call-arg]


def row(table: pd.DataFrame, name: str) -> list[Any]:
    return list(table.loc[name])


def test_compare_hyperparameters(history: Engine) -> None:
    table = analysis.compare_hyperparameters(["job-b", "job-c"], history)
    assert table.columns.tolist() == ["job-b", "job-c"] and table.index.name == "name"
    hyper = table.loc[: analysis.COMPARE_OUTCOMES[0]].iloc[:-1]
    # learning_rate (1e-4 both) and the all-NA ones are dropped; "auto" and extras shown.
    assert hyper.index.tolist() == ["batch_size", "n_epochs", "lora", "foo"]
    assert row(table, "batch_size") == [8, 16]
    assert row(table, "n_epochs") == ["auto", 3]
    assert table.loc["lora"].iloc[0] is pd.NA and table.loc["lora"].iloc[1] is True
    assert table.loc["foo"].iloc[0] == '{"x":1}' and table.loc["foo"].iloc[1] is pd.NA
    assert row(table, "status") == ["running", "failed"]
    assert table.loc["trained_tokens"].iloc[0] == 1500
    assert table.index[-len(analysis.COMPARE_OUTCOMES) :].tolist() == list(
        analysis.COMPARE_OUTCOMES
    )


def test_compare_all_rows_and_outcomes(history: Engine) -> None:
    table = analysis.compare_hyperparameters(["job-a", "job-b"], history, only_different=False)
    assert table.index.tolist() == [
        *analysis.HYPERPARAMETER_NAMES,
        "foo",
        *analysis.COMPARE_OUTCOMES,
    ]
    assert row(table, "learning_rate") == [1e-4, 1e-4]
    assert row(table, "running_s") == [235.0, pytest.approx(100.0)]
    assert table.loc["mean_tokens_per_s"].iloc[0] == 3_000_000 / 200
    assert type(table.loc["trained_tokens"].iloc[0]) is int
    # One job: nothing to differ from, so every row is shown.
    assert "learning_rate" in analysis.compare_hyperparameters(["job-a"], history).index


def test_compare_refuses_unknown_and_ambiguous_ids(history: Engine) -> None:
    with pytest.raises(UsageProblem, match=r"^unknown job ids: nope, gone \(ftlog jobs lists"):
        analysis.compare_hyperparameters(["job-a", "nope", "gone"], history)
    beta = ensure_source(history, "beta", "https://beta.example/v1")
    record(history, beta, 9000, job("job-a", "queued", 9000))
    with pytest.raises(
        UsageProblem, match=r"job-a is recorded under several sources \(alpha, beta\)"
    ):
        analysis.compare_hyperparameters(["job-a"], history)
    table = analysis.compare_hyperparameters(["job-a"], history, source="beta")
    assert table.loc["status", "job-a"] == "queued"


LOADERS = [
    (analysis.load_jobs, analysis.JOB_COLUMNS),
    (analysis.load_hyperparameters, analysis.HYPERPARAMETER_COLUMNS),
    (analysis.load_snapshots, analysis.SNAPSHOT_COLUMNS),
    (analysis.load_status_history, analysis.STATUS_HISTORY_COLUMNS),
    (analysis.status_durations, analysis.STATUS_DURATION_COLUMNS),
    (analysis.throughput, analysis.THROUGHPUT_COLUMNS),
    (analysis.throughput_summary, analysis.SUMMARY_COLUMNS),
]


def test_empty_store_gives_empty_typed_frames(engine: Engine, db_url: str) -> None:
    for load, kinds in LOADERS:
        frame = load(db_url)
        assert len(frame) == 0, load.__name__
        assert list(frame.columns) == list(kinds), load.__name__
        assert_dtypes(frame, kinds)


def test_default_store_and_unknown_ids(
    history: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTLOG_DATABASE_URL", db_url)
    assert analysis.load_jobs()["job_id"].tolist() == ["job-a", "job-b", "job-c"]
    for load, kinds in LOADERS:
        frame = load(db_url, job_ids=["nope"])
        assert len(frame) == 0 and list(frame.columns) == list(kinds), load.__name__


def test_csv_round_trip_keeps_values(history: Engine) -> None:
    summary = analysis.throughput_summary(history)
    text = summary.to_csv(index=False)
    back = pd.read_csv(io.StringIO(text))
    assert back["mean_tokens_per_s"].iloc[0] == 3_000_000 / 200
    assert math.isnan(back["ended_at"].iloc[1])
    assert json.loads(analysis.load_hyperparameters(history)["extra"].iloc[1]) == {
        "foo": {"x": 1},
        "n_epochs": "auto",
    }


def test_throughput_and_durations_across_a_pause(engine: Engine) -> None:
    """Running → queued → running: no interval spans the pause; both stays count."""
    source = ensure_source(engine, "alpha", "https://alpha.example/v1")
    for seconds, status, tokens in [
        (0, "running", 0),
        (10, "running", 100),
        (20, "queued", 100),
        (100, "running", 100),
        (110, "running", 200),
    ]:
        record(engine, source, seconds, job("job-p", status, 0, trained_tokens=tokens))
    speed = analysis.throughput(engine)
    assert speed["start"].tolist() == [at(0), at(100)]
    assert speed["tokens_per_s"].tolist() == [10.0, 10.0]
    stays = analysis.status_durations(engine)
    # Transitions at 15 ± 5 and 60 ± 40; the last stay runs to the last observation (110).
    assert stays["entered_at"].tolist() == [at(0), at(15), at(60)]
    assert stays["seconds"].tolist() == [15.0, 45.0, 50.0]
    summary = analysis.throughput_summary(engine).iloc[0]
    assert (summary["running_s"], summary["queued_s"]) == (65.0, 45.0)
    # first seen running: it started at some unknown time before the first poll
    assert pd.isna(summary["started_at"]) and pd.isna(summary["ended_at"])
    assert summary["median_tokens_per_s"] == 10.0 and summary["intervals"] == 2
