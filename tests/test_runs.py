"""Many jobs at once: the runs table, job selection by id prefix, comparison by filter and by
hyperparameter, and the queue/run time trends; on SQLite and Postgres.

The history (times in seconds after T0, Monday 2026-01-05 00:00 UTC; source ``lab`` unless
said otherwise):

- ``ftjob-a1f3`` (llama, lr 1e-5, bs 8, 3 epochs): queued at 0 and 60, running at 120 (0
  tokens) and 220 (100k), succeeded at 320 with 200k. queued→running in (60, 120] → 90,
  running→succeeded in (220, 320] → 270: queued 90 s, running 180 s. Checkpoints: step 10
  (train 2.0, valid 2.2), 20 (1.5, 1.9), 30 (1.6, 2.0).
- ``ftjob-a2c7`` (llama, lr 1e-4, bs 8, 3 epochs, lora): queued at 3600, running at 3900 (0)
  and 4000 (50k), failed at 4100 with 50k: queued 3750 - 3600 = 150 s, running 4050 - 3750
  = 300 s.
- ``ftjob-a3e5`` (llama, lr 1e-4, bs 16, 3 epochs), created Wednesday (day 2): queued at
  +0, running at +30 (0) and +130 (10k), still running: queued 15 s, running 130 - 15 = 115 s
  (up to the last observation).
- ``ftjob-b1d2`` (qwen, lr 1e-4, bs 16, epochs "auto"), created next Monday (day 7) +100:
  queued at +100 and +700, still queued: queued 600 s, never running.
- ``ftjob-b2k8`` in source ``other`` (qwen, lr 1e-5, bs 16, 2 epochs), day 7 +200: first seen
  running at +200 (1k tokens), +300 (2k), succeeded at +400 (3k): running 350 - 200 = 150 s,
  never seen queued.

Prices: llama 1.00 USD and qwen 2.00 EUR per million tokens.
"""

from __future__ import annotations

import csv
import io
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from ftlog import analysis, store
from ftlog.cli import main
from ftlog.errors import UsageProblem
from ftlog.models import Job
from ftlog.parse import parse_checkpoint, parse_job
from ftlog.pricing import Price, PriceTable
from ftlog.store import Observation, ensure_source, save_observations
from tests.helpers import one_line_error

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
DAY = 86_400
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen2.5-7B-Instruct"
PRICES = PriceTable({LLAMA: Price(1.00, "USD"), QWEN: Price(2.00, "EUR")})
PRICES_TOML = f"""[prices]
"{LLAMA}" = {{ per_million_tokens = 1.00, currency = "USD" }}
"{QWEN}" = {{ per_million_tokens = 2.00, currency = "EUR" }}
"""
IDS = ["ftjob-a1f3", "ftjob-a2c7", "ftjob-a3e5", "ftjob-b1d2", "ftjob-b2k8"]
NA = pd.NA


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job(job_id: str, status: str, created: float, tokens: int | None, **hyper: Any) -> Any:
    model = QWEN if job_id.startswith("ftjob-b") else LLAMA
    return {
        "id": job_id,
        "object": "fine_tuning.job",
        "model": model,
        "status": status,
        "created_at": int(at(created).timestamp()),
        "trained_tokens": tokens,
        "hyperparameters": hyper,
    }


def lives() -> dict[str, list[tuple[float, dict[str, Any]]]]:
    a1 = {"learning_rate": 1e-5, "batch_size": 8, "n_epochs": 3, "lora": False}
    a2 = {"learning_rate": 1e-4, "batch_size": 8, "n_epochs": 3, "lora": True}
    a3 = {"learning_rate": 1e-4, "batch_size": 16, "n_epochs": 3}
    b1 = {"learning_rate": 1e-4, "batch_size": 16, "n_epochs": "auto"}
    b2 = {"learning_rate": 1e-5, "batch_size": 16, "n_epochs": 2}
    d2, d7 = 2 * DAY, 7 * DAY
    return {
        "lab": [
            (0, job("ftjob-a1f3", "queued", 0, None, **a1)),
            (60, job("ftjob-a1f3", "queued", 0, None, **a1)),
            (120, job("ftjob-a1f3", "running", 0, 0, **a1)),
            (220, job("ftjob-a1f3", "running", 0, 100_000, **a1)),
            (320, {**job("ftjob-a1f3", "succeeded", 0, 200_000, **a1),
                   "finished_at": int(at(300).timestamp())}),
            (3600, job("ftjob-a2c7", "queued", 3600, None, **a2)),
            (3900, job("ftjob-a2c7", "running", 3600, 0, **a2)),
            (4000, job("ftjob-a2c7", "running", 3600, 50_000, **a2)),
            (4100, job("ftjob-a2c7", "failed", 3600, 50_000, **a2)),
            (d2, job("ftjob-a3e5", "queued", d2, None, **a3)),
            (d2 + 30, job("ftjob-a3e5", "running", d2, 0, **a3)),
            (d2 + 130, job("ftjob-a3e5", "running", d2, 10_000, **a3)),
            (d7 + 100, job("ftjob-b1d2", "queued", d7 + 100, None, **b1)),
            (d7 + 700, job("ftjob-b1d2", "queued", d7 + 100, None, **b1)),
        ],
        "other": [
            (d7 + 200, job("ftjob-b2k8", "running", d7 + 200, 1_000, **b2)),
            (d7 + 300, job("ftjob-b2k8", "running", d7 + 200, 2_000, **b2)),
            (d7 + 400, job("ftjob-b2k8", "succeeded", d7 + 200, 3_000, **b2)),
        ],
    }  # fmt: skip


def checkpoint(step: int, train: float, valid: float) -> dict[str, Any]:
    return {
        "id": f"ckpt-{step}",
        "object": "fine_tuning.job.checkpoint",
        "created_at": int(at(120 + step).timestamp()),
        "step_number": step,
        "fine_tuned_model_checkpoint": f"ft:ckpt-{step}",
        "metrics": {"step": step, "train_loss": train, "valid_loss": valid},
    }


@pytest.fixture
def history(engine: Engine) -> Engine:
    for source, life in lives().items():
        source_id = ensure_source(engine, source, f"https://{source}.example/v1")
        for seconds, obj in sorted(life, key=lambda item: item[0]):
            save_observations(engine, source_id, [Observation(parse_job(obj), at(seconds))])
    with engine.connect() as conn:
        pk, sha = conn.execute(
            select(Job.id, Job.payload_sha256).where(Job.job_id == "ftjob-a1f3")
        ).one()
    target = store.DetailTarget(pk, "ftjob-a1f3", sha, None)
    found = [
        parse_checkpoint(checkpoint(step, train, valid), "ftjob-a1f3")
        for step, train, valid in [(10, 2.0, 2.2), (30, 1.6, 2.0), (20, 1.5, 1.9)]
    ]
    store.save_details(engine, "checkpoints", [store.FetchedDetails(target, found)])
    return engine


@pytest.fixture
def history_url(history: Engine, db_url: str) -> str:
    return db_url


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


# --- the runs table ----------------------------------------------------------------------------


def test_runs_table_has_one_typed_row_per_job(history: Engine) -> None:
    runs = analysis.runs(history, prices=PRICES)
    assert list(runs.columns) == list(analysis.RUN_COLUMNS)
    expected = {name: analysis.DTYPES[kind] for name, kind in analysis.RUN_COLUMNS.items()}
    assert {name: str(dtype) for name, dtype in runs.dtypes.items()} == expected
    assert runs["job_id"].tolist() == IDS  # in order of creation
    assert runs["source"].tolist() == ["lab", "lab", "lab", "lab", "other"]
    by_id = runs.set_index("job_id")
    a1 = by_id.loc["ftjob-a1f3"]
    assert (a1["model"], a1["status"], a1["trained_tokens"]) == (LLAMA, "succeeded", 200_000)
    assert (a1["learning_rate"], a1["batch_size"], a1["n_epochs"]) == (1e-5, 8, 3)
    assert a1["lora"] == False  # noqa: E712 - a numpy bool
    assert a1.isna()["warmup_ratio"]
    assert (a1["queued_s"], a1["running_s"]) == (90.0, 180.0)
    assert (a1["final_train_loss"], a1["best_train_loss"]) == (1.6, 1.5)
    assert (a1["final_valid_loss"], a1["best_valid_loss"]) == (2.0, 1.9)
    assert (a1["estimated_cost"], a1["currency"]) == (pytest.approx(0.20), "USD")
    assert (a1["created_at"], a1["finished_at"]) == (at(0), at(300))
    a2 = by_id.loc["ftjob-a2c7"]
    assert (a2["queued_s"], a2["running_s"], a2["status"]) == (150.0, 300.0, "failed")
    assert a2.isna()["final_valid_loss"] and a2["lora"]
    assert a2["estimated_cost"] == pytest.approx(0.05)
    a3 = by_id.loc["ftjob-a3e5"]
    assert (a3["queued_s"], a3["running_s"]) == (15.0, 115.0)  # running: so far
    b1 = by_id.loc["ftjob-b1d2"]
    assert b1.isna()["n_epochs"]  # "auto" does not fit an integer column
    assert b1["queued_s"] == 600.0 and b1.isna()["running_s"] and b1.isna()["trained_tokens"]
    assert b1.isna()["estimated_cost"] and b1["currency"] == "EUR"  # priced, nothing trained
    b2 = by_id.loc["ftjob-b2k8"]
    assert b2.isna()["queued_s"] and b2["running_s"] == 150.0
    assert (b2["estimated_cost"], b2["currency"]) == (pytest.approx(0.006), "EUR")
    # Speed is the throughput summary's, never recomputed.
    summary = analysis.throughput_summary(history).set_index("job_id")
    assert by_id["mean_tokens_per_s"].equals(summary["mean_tokens_per_s"])


def test_runs_take_the_filters_and_no_prices(history: Engine) -> None:
    runs = analysis.runs(history, model="Qwen/*")
    assert runs["job_id"].tolist() == ["ftjob-b1d2", "ftjob-b2k8"]
    assert runs["estimated_cost"].isna().all() and runs["currency"].isna().all()
    assert analysis.runs(history, job_ids=["nope"]).empty


def test_export_runs(history_url: str, tmp_path: Any) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES_TOML, encoding="utf-8")
    result = cli("export", "runs", "--db", history_url, "--prices", str(prices), "--since",
                 "2026-01-12")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = csv_rows(result.output)
    assert [r["job_id"] for r in rows] == ["ftjob-b1d2", "ftjob-b2k8"]
    assert list(rows[0]) == list(analysis.RUN_COLUMNS)
    assert (rows[1]["estimated_cost"], rows[1]["currency"]) == ("0.006", "EUR")
    assert rows[0]["n_epochs"] == "" and rows[1]["created_at"] == "2026-01-12T00:03:20Z"


# --- selecting jobs by id or prefix ------------------------------------------------------------


def test_select_jobs_by_id_or_unique_prefix(history: Engine) -> None:
    picked = analysis.select_jobs(history, job_ids=["ftjob-b2", "ftjob-a1f3", "ftjob-a1"])
    assert picked["job_id"].tolist() == ["ftjob-b2k8", "ftjob-a1f3"]  # as named, once each
    assert list(picked.columns) == list(analysis.JOB_COLUMNS)
    assert analysis.select_jobs(history, status="queued")["job_id"].tolist() == ["ftjob-b1d2"]


def test_an_ambiguous_prefix_lists_the_candidates(history: Engine) -> None:
    with pytest.raises(UsageProblem) as err:
        analysis.select_jobs(history, job_ids=["ftjob-a"])
    assert str(err.value) == (
        "job id prefix ftjob-a matches 3 jobs (ftjob-a1f3, ftjob-a2c7, ftjob-a3e5); "
        "give more of the id"
    )
    # The filters narrow what a prefix can match.
    only = analysis.select_jobs(history, job_ids=["ftjob-a"], status="failed")
    assert only["job_id"].tolist() == ["ftjob-a2c7"]


@pytest.mark.parametrize("name", ["ftjob-zz", "FTJOB-A2", "ftjob-a_", "ftjob-a%"])
def test_an_unknown_id_is_named(history: Engine, name: str) -> None:
    # Case-sensitive on SQLite too, and LIKE's wildcards are plain characters.
    with pytest.raises(UsageProblem, match=rf"^unknown job id: {name} \("):
        analysis.select_jobs(history, job_ids=[name])


def test_unknown_ids_get_a_hint(history: Engine) -> None:
    with pytest.raises(UsageProblem) as err:
        analysis.select_jobs(history, job_ids=["ftjob-a2c8", "nothing-like-it"])
    assert str(err.value) == (
        "unknown job ids: ftjob-a2c8, nothing-like-it (did you mean ftjob-a2c7?)"
    )
    with pytest.raises(UsageProblem) as err:
        analysis.select_jobs(history, job_ids=["ftjob-a2c7"], status="succeeded")
    assert str(err.value).startswith(
        "unknown job id among the jobs the filters select (status): ftjob-a2c7"
    )


def test_an_id_in_two_sources_needs_the_source(history: Engine) -> None:
    other = ensure_source(history, "other", "https://other.example/v1")
    twin = job("ftjob-a1f3", "queued", 0, None)
    save_observations(history, other, [Observation(parse_job(twin), at(10))])
    with pytest.raises(UsageProblem, match=r"ftjob-a1f3 is recorded under several sources "
                       r"\(lab, other\); pick one with --source"):  # fmt: skip
        analysis.select_jobs(history, job_ids=["ftjob-a1"])
    picked = analysis.select_jobs(history, job_ids=["ftjob-a1"], source="other")
    assert picked["status"].tolist() == ["queued"]


# --- comparing a selection ---------------------------------------------------------------------


def test_compare_jobs_one_row_per_job(history: Engine) -> None:
    frame = analysis.compare_jobs(history, model="meta-llama/*", prices=PRICES)
    assert frame["job_id"].tolist() == ["ftjob-a1f3", "ftjob-a2c7", "ftjob-a3e5"]
    hyper = list(frame.columns[2 : -len(analysis.COMPARE_OUTCOMES)])
    assert hyper == ["batch_size", "learning_rate", "lora"]  # n_epochs: 3 in all three
    assert frame["lora"].tolist() == [False, True, NA]
    assert frame["estimated_cost"].tolist() == [pytest.approx(0.2), pytest.approx(0.05),
                                                pytest.approx(0.01)]  # fmt: skip
    every = analysis.compare_jobs(history, only_different=False)
    assert every["n_epochs"].tolist() == [3, 3, 3, "auto", 2]  # as the jobs gave them


def test_compare_by_a_hyperparameter(history: Engine) -> None:
    groups = analysis.compare_by(history, "learning_rate", prices=PRICES)
    assert list(groups.columns) == ["learning_rate", *analysis.COMPARE_BY_COLUMNS]
    assert groups["learning_rate"].tolist() == [1e-5, 1e-4]
    assert groups["jobs"].tolist() == [2, 3] and groups["succeeded"].tolist() == [2, 0]
    speed = analysis.throughput_summary(history).set_index("job_id")["mean_tokens_per_s"]
    slow = [speed["ftjob-a1f3"], speed["ftjob-b2k8"]]
    assert groups["mean_tokens_per_s"].iloc[0] == pytest.approx(statistics.mean(slow))
    assert (groups["min_tokens_per_s"].iloc[0], groups["max_tokens_per_s"].iloc[0]) == (
        min(slow), max(slow),
    )  # fmt: skip
    # Only ftjob-a1f3 has a validation loss; ftjob-b1d2 never ran, so no speed either.
    assert groups["mean_final_valid_loss"].tolist() == [2.0, NA]
    assert groups["best_final_valid_loss"].tolist() == [2.0, NA]
    fast = [speed["ftjob-a2c7"], speed["ftjob-a3e5"]]
    assert groups["max_tokens_per_s"].iloc[1] == max(fast)
    # 0.2 USD + 0.006 EUR are not added; 0.05 + 0.01 USD are (ftjob-b1d2 trained nothing).
    assert groups["estimated_cost"].iloc[0] is NA and groups["currency"].iloc[0] == "EUR, USD"
    assert groups["estimated_cost"].iloc[1] == pytest.approx(0.06)
    assert groups["currency"].iloc[1] == "USD"


def test_compare_by_orders_numbers_then_text(history: Engine) -> None:
    groups = analysis.compare_by(history, "n_epochs")
    assert groups["n_epochs"].tolist() == [2, 3, "auto"]
    assert groups["jobs"].tolist() == [1, 3, 1]
    lora = analysis.compare_by(history, "lora")  # absent in three jobs: the last group
    assert lora["lora"].tolist() == [False, True, NA] and lora["jobs"].tolist() == [1, 1, 3]
    with pytest.raises(UsageProblem, match="unknown hyperparameter 'lr' to compare by"):
        analysis.compare_by(history, "lr")


def test_compare_command_by_filter_and_by(history_url: str) -> None:
    selected = ("--model", "meta-llama/*", "--status", "succeeded", "--status", "failed")
    rows = csv_rows(cli("compare", *selected, "--db", history_url, "--format", "csv").output)
    assert [r["job_id"] for r in rows] == ["ftjob-a1f3", "ftjob-a2c7"]
    besides = csv_rows(cli("compare", "ftjob-a", "--status", "failed", "--db", history_url,
                           "--format", "csv").output)  # fmt: skip
    assert [r["job_id"] for r in besides] == ["ftjob-a2c7"]
    grouped = csv_rows(cli("compare", "--by", "batch_size", "--db", history_url,
                           "--format", "csv").output)  # fmt: skip
    assert [(r["batch_size"], r["jobs"], r["succeeded"]) for r in grouped] == [
        ("8", "2", "1"), ("16", "3", "1"),
    ]  # fmt: skip
    table = cli("compare", "--by", "batch_size", "--db", history_url).output.splitlines()
    assert table[0].split()[:3] == ["batch_size", "jobs", "succeeded"] and len(table) == 4
    exported = csv_rows(cli("export", "comparison", "--by", "batch_size", "--db",
                            history_url).output)  # fmt: skip
    assert exported == grouped


def test_compare_command_errors_are_one_line(history_url: str) -> None:
    db = ("--db", history_url)
    one_line_error(cli("compare", "--by", "lr", *db), "unknown hyperparameter 'lr'",
                   "learning_rate")  # fmt: skip
    one_line_error(cli("compare", "ftjob-a", *db), "matches 3 jobs", "ftjob-a3e5")
    one_line_error(cli("compare", "ftjob-nope", "ftjob-a1", *db), "unknown job id", "ftjob-nope")
    one_line_error(cli("show", "ftjob-", *db), "matches 5 jobs", ", ".join(IDS))
    one_line_error(cli("export", "comparison", "ftjob-b", "-o", "-", *db), "ftjob-b1d2",
                   "ftjob-b2k8")  # fmt: skip
    usage = cli("compare", "--by", "batch_size", "--all", *db)
    assert usage.exit_code == 2 and "--all applies to the per-job comparison" in usage.output


def test_show_and_throughput_take_a_prefix(history_url: str) -> None:
    shown = cli("show", "ftjob-a2", "--db", history_url)
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("Job ftjob-a2c7\n")
    rows = csv_rows(cli("throughput", "ftjob-b2", "--db", history_url, "--format", "csv").output)
    assert [r["job_id"] for r in rows] == ["ftjob-b2k8"]


def test_compare_table_turns_to_rows_beyond_five_jobs(engine: Engine, db_url: str) -> None:
    source = ensure_source(engine, "lab", "https://lab.example/v1")
    for i in range(7):
        obj = job(f"ftjob-{i}", "succeeded", i, 1000 * (i + 1), learning_rate=10.0 ** -(i + 1))
        save_observations(engine, source, [Observation(parse_job(obj), at(i))])
    few = cli("compare", "ftjob-1", "ftjob-2", "--db", db_url).output.splitlines()
    assert few[0].split() == ["name", "ftjob-1", "ftjob-2"]  # side by side
    many = cli("compare", "--db", db_url).output.splitlines()
    assert many[0].split()[:3] == ["job_id", "learning_rate", "status"]
    assert [line.split()[0] for line in many[2:]] == [f"ftjob-{i}" for i in range(7)]
    # Only outcomes that hold something: these jobs were never seen running.
    assert "trained_tokens" in many[0] and "running_s" not in many[0]


# --- trends ------------------------------------------------------------------------------------


def test_trends_per_day_and_model(history: Engine) -> None:
    trends = analysis.trends(history)
    assert list(trends.columns) == list(analysis.TREND_COLUMNS)
    rows = [tuple(None if v is NA else v for v in row) for row in trends.itertuples(index=False)]
    assert rows == [
        # 90 and 150 s queued: median 120, p90 90 + 0.9 × 60; running 180 and 300.
        ("2026-01-05", LLAMA, 2, 120.0, pytest.approx(144.0), 240.0, pytest.approx(288.0)),
        ("2026-01-07", LLAMA, 1, 15.0, 15.0, 115.0, 115.0),
        # ftjob-b1d2 never ran, ftjob-b2k8 was never seen queued: one value each.
        ("2026-01-12", QWEN, 2, 600.0, 600.0, 150.0, 150.0),
    ]


def test_trends_per_week_for_every_model(history: Engine) -> None:
    weekly = analysis.trends(history, every="week", by_model=False)
    assert list(weekly.columns) == [c for c in analysis.TREND_COLUMNS if c != "model"]
    assert weekly["period"].tolist() == ["2026-01-05", "2026-01-12"]
    first = weekly.iloc[0]
    # queued 15, 90, 150: median 90, p90 at rank 0.9 × 2 = 1.8: 90 + 0.8 × 60 = 138;
    # running 115, 180, 300: median 180, p90 180 + 0.8 × 120 = 276.
    assert first["jobs"] == 3
    assert (first["median_queued_s"], first["p90_queued_s"]) == (90.0, pytest.approx(138.0))
    assert (first["median_running_s"], first["p90_running_s"]) == (180.0, pytest.approx(276.0))
    assert analysis.trends(history, every="week", model="Qwen/*")["jobs"].tolist() == [2]
    with pytest.raises(ValueError, match="every must be one of day, week"):
        analysis.trends(history, every="month")  # type: ignore[arg-type]


def test_trends_command_and_export(history_url: str) -> None:
    rows = csv_rows(cli("trends", "--every", "week", "--all-models", "--db", history_url,
                        "--format", "csv").output)  # fmt: skip
    assert [(r["period"], r["jobs"], r["p90_running_s"]) for r in rows] == [
        ("2026-01-05", "3", "276.0"), ("2026-01-12", "2", "150.0"),
    ]  # fmt: skip
    table = cli("trends", "--db", history_url).output.splitlines()
    assert "median_queued_s (h:mm:ss)" in table[0] and "0:02:00" in table[2]
    exported = csv_rows(cli("export", "trends", "--every", "week", "--db", history_url).output)
    assert [r["model"] for r in exported] == [LLAMA, QWEN]
    usage = cli("export", "jobs", "--every", "week", "--db", history_url)
    assert usage.exit_code == 2 and "--every applies to export trends only" in usage.output
