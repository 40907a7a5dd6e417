"""Exports as the ecosystem expects: stdout by default, the format from --format or the
file's suffix, one --format vocabulary, JSON that nests objects, Parquet through an extra."""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from ftlog import settings
from ftlog.cli import main
from ftlog.simulator import make_jobs
from tests.helpers import T0, TOKEN
from tests.hostile import job


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def store(engine: Engine, db_url: str, sim_factory: Any) -> str:
    """One OpenAI-flavoured job ("auto" hyperparameters), finished, with its metrics events,
    recorded by ``ftlog snapshot`` from the simulated API; then one more object by hand."""
    (spec,) = make_jobs(1, seed=3, start=T0, flavor="openai")
    sim = sim_factory([replace(spec, id="ftjob-x")], now=T0 + 10_000_000)
    env = {settings.API_KEY: TOKEN}
    result = CliRunner().invoke(
        main, ["snapshot", "--base-url", sim.base_url, "--db", db_url], env=env
    )
    assert result.exit_code == 0, result.output
    return db_url


def test_stdout_is_the_default(store: str) -> None:
    result = cli("export", "snapshots", "--db", store)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert [row["job_id"] for row in rows] == ["ftjob-x"]
    assert cli("export", "snapshots", "-o", "-", "--db", store).stdout == result.stdout


@pytest.mark.parametrize(
    ("suffix", "kind"),
    [(".csv", "csv"), (".json", "json"), (".jsonl", "jsonl"), (".ndjson", "jsonl"),
     (".JSON", "json")],
)  # fmt: skip
def test_the_suffix_picks_the_format(store: str, tmp_path: Path, suffix: str, kind: str) -> None:
    target = tmp_path / f"out{suffix}"
    result = cli("export", "snapshots", "-o", str(target), "--db", store)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    text = target.read_text(encoding="utf-8")
    if kind == "csv":
        records = [dict(row) for row in csv.DictReader(io.StringIO(text, newline=""))]
        assert text.startswith("source,job_id,status")
    elif kind == "json":
        records = json.loads(text)
    else:
        records = [json.loads(line) for line in text.splitlines()]
    assert [r["job_id"] for r in records] == ["ftjob-x"]
    tokens = records[0]["trained_tokens"]
    assert (tokens > 0) if kind != "csv" else tokens.isdigit()


def test_format_wins_and_an_unknown_suffix_is_refused(store: str, tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    refused = cli("export", "jobs", "-o", str(target), "--db", store)
    assert refused.exit_code == 2
    assert f"cannot tell a format from the name {target}" in refused.output
    assert "--format csv|json|jsonl|parquet" in refused.output
    assert not target.exists()
    assert (
        cli("export", "jobs", "-o", str(target), "--format", "jsonl", "--db", store).exit_code == 0
    )
    assert json.loads(target.read_text(encoding="utf-8").splitlines()[0])["job_id"] == "ftjob-x"


def test_json_nests_objects(store: str) -> None:
    hyper = json.loads(cli("export", "hyperparameters", "--format", "json", "--db", store).stdout)
    assert hyper[0]["extra"] == {"learning_rate_multiplier": 5.0}
    lines = cli("export", "events", "--format", "jsonl", "--db", store).stdout.splitlines()
    metrics = [json.loads(line) for line in lines if json.loads(line)["type"] == "metrics"]
    assert metrics and all(isinstance(m["data"]["step"], int) for m in metrics)
    # CSV keeps them as JSON text, one cell.
    rows = csv.DictReader(io.StringIO(cli("export", "events", "--db", store).stdout))
    texts = [json.loads(row["data"]) for row in rows if row["type"] == "metrics"]
    assert texts == [m["data"] for m in metrics]
    shown = json.loads(cli("show", "ftjob-x", "--format", "json", "--db", store).stdout)
    assert shown["hyperparameters"]["extra"] == {"learning_rate_multiplier": 5.0}
    assert any(isinstance(e["data"], dict) for e in shown["events"])


def test_parquet_keeps_types(store: str, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    target = tmp_path / "snapshots.parquet"
    assert cli("export", "snapshots", "-o", str(target), "--db", store).exit_code == 0
    frame = pd.read_parquet(target)
    exported = json.loads(cli("export", "snapshots", "--format", "json", "--db", store).stdout)
    assert frame["trained_tokens"].tolist() == [exported[0]["trained_tokens"]]
    assert str(frame["first_observed_at"].dtype) == "datetime64[us, UTC]"
    stamp = pd.Timestamp(exported[0]["first_observed_at"])
    assert frame["first_observed_at"].iloc[0] == stamp
    # To a pipe (not a terminal), as bytes; a comparison's mixed columns as text.
    piped = cli("export", "comparison", "ftjob-x", "--format", "parquet", "--db", store)
    assert piped.exit_code == 0, piped.output
    compared = pd.read_parquet(io.BytesIO(piped.stdout_bytes))
    assert compared["job_id"].tolist() == ["ftjob-x"] and "batch_size" in compared.columns


def test_parquet_without_pyarrow_names_the_extra(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
    target = tmp_path / "x.parquet"
    result = cli("export", "jobs", "-o", str(target), "--db", store)
    assert result.exit_code == 2
    assert result.output == "Error: writing Parquet needs pyarrow: pip install 'ftlog[parquet]'\n"
    assert not target.exists()


def test_one_format_vocabulary(store: str) -> None:
    for command in (("jobs",), ("throughput",), ("cost",), ("compare", "ftjob-x")):
        lines = cli(*command, "--format", "jsonl", "--db", store).stdout.splitlines()
        assert lines and all(isinstance(json.loads(line), dict) for line in lines), command
        array = json.loads(cli(*command, "--format", "json", "--db", store).stdout)
        assert isinstance(array, list) and len(array) == len(lines), command
    assert cli("export", "jobs", "--format", "table", "--db", store).exit_code == 2
    assert cli("jobs", "--format", "xml", "--db", store).exit_code == 2


HUGE_TOKENS = {"ftjob-max": 2**63 - 1, "ftjob-odd": 2**53 + 1, "ftjob-null": None}


def ingest_huge_tokens(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        "".join(
            json.dumps(job(job_id, trained_tokens=tokens)) + "\n"
            for job_id, tokens in HUGE_TOKENS.items()
        )
    )
    ingested = CliRunner().invoke(main, ["ingest", str(path), "--db", db_url])
    assert ingested.exit_code == 0, ingested.output


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_integers_beyond_float_precision_export_exactly_beside_nulls(
    db_url: str, tmp_path: Path, fmt: str
) -> None:
    """int64's maximum and 2**53 + 1 stay exact when another job's value is NULL (pandas
    would read the column as float64: the first does not cast back, the second reads 2**53)."""
    values = HUGE_TOKENS
    ingest_huge_tokens(db_url, tmp_path)
    result = CliRunner().invoke(main, ["export", "jobs", "--format", fmt, "--db", db_url])
    assert result.exit_code == 0, result.output
    if fmt == "json":
        exported = {r["job_id"]: r["trained_tokens"] for r in json.loads(result.stdout)}
    else:
        rows = csv.DictReader(io.StringIO(result.stdout))
        exported = {
            r["job_id"]: int(r["trained_tokens"]) if r["trained_tokens"] else None for r in rows
        }
    assert exported == values


def test_tables_show_huge_integers_exactly_and_never_a_wrapped_sum(
    db_url: str, tmp_path: Path
) -> None:
    ingest_huge_tokens(db_url, tmp_path)
    listed = cli("jobs", "--db", db_url)
    assert listed.exit_code == 0, listed.output
    assert "9,223,372,036,854,775,807" in listed.output
    assert "9,007,199,254,740,993" in listed.output
    shown = cli("show", "ftjob-odd", "--db", db_url)
    assert "9,007,199,254,740,993" in shown.output
    # int64's maximum + 2**53 + 1 does not fit int64: the total is unknown, never negative.
    costs = cli("cost", "--format", "json", "--db", db_url)
    assert costs.exit_code == 0, costs.output
    (row,) = json.loads(costs.stdout)
    assert row["jobs"] == 3 and row["trained_tokens"] is None
