"""The one time grammar: every --since/--until/--observed-at and every analysis since/until."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from ftlog import analysis
from ftlog.cli import main
from ftlog.errors import UsageProblem
from ftlog.models import Snapshot
from ftlog.times import TimeError, parse_time, to_utc

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31T12:00", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31 12:00:05.25", datetime(2026, 1, 31, 12, 0, 5, 250_000, tzinfo=UTC)),
        ("2026-01-31T12:00Z", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31t12:00:00z", datetime(2026, 1, 31, 12, tzinfo=UTC)),
        ("2026-01-31T12:00:00+02:00", datetime(2026, 1, 31, 10, tzinfo=UTC)),
        ("2026-01-31T12:00-0530", datetime(2026, 1, 31, 17, 30, tzinfo=UTC)),
        (" 2026-01-31 ", datetime(2026, 1, 31, tzinfo=UTC)),
        ("now", NOW),
        ("90s", NOW - timedelta(seconds=90)),
        ("30m", NOW - timedelta(minutes=30)),
        ("12h", NOW - timedelta(hours=12)),
        ("1.5H", NOW - timedelta(hours=1.5)),
        ("7d", NOW - timedelta(days=7)),
        ("2 w", NOW - timedelta(weeks=2)),
    ],
)
def test_the_grammar(text: str, expected: datetime) -> None:
    moment = parse_time(text, now=NOW)
    assert moment == expected
    assert moment.tzinfo is UTC  # aware, and in UTC whatever the input's offset


@pytest.mark.parametrize("text", ["", "yesterday", "7x", "d7", "2026-13-01", "12:00", "-3d"])
def test_anything_else_is_refused_with_the_examples(text: str) -> None:
    with pytest.raises(TimeError, match=r"is not a time: use an ISO date or time \(2026-01-31"):
        parse_time(text, now=NOW)


def test_datetimes_are_taken_as_utc_when_naive() -> None:
    assert to_utc(datetime(2026, 1, 1, 9)) == datetime(2026, 1, 1, 9, tzinfo=UTC)
    plus_two = datetime(2026, 1, 1, 9, tzinfo=timezone(timedelta(hours=2)))
    assert to_utc(plus_two) == datetime(2026, 1, 1, 7, tzinfo=UTC)
    assert to_utc(plus_two).tzinfo is UTC


def test_a_span_back_from_now_uses_the_clock() -> None:
    assert abs(parse_time("7d") - (datetime.now(UTC) - timedelta(days=7))) < timedelta(seconds=5)


# --- the CLI and the library read it alike ---------------------------------------------------


def cli(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def job(job_id: str, created_at: datetime) -> str:
    return json.dumps(
        {
            "id": job_id,
            "object": "fine_tuning.job",
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "status": "running",
            "created_at": int(created_at.timestamp()),
            "trained_tokens": 1000,
        }
    )


@pytest.mark.parametrize(
    ("observed_at", "expected"),
    [
        ("2026-01-02", datetime(2026, 1, 2, tzinfo=UTC)),  # crashed once stored (naive)
        ("2026-01-03T10:00Z", datetime(2026, 1, 3, 10, tzinfo=UTC)),  # was refused
        ("2026-01-03T12:00+02:00", datetime(2026, 1, 3, 10, tzinfo=UTC)),
    ],
)
def test_ingest_observed_at_takes_the_grammar(
    engine: Engine, db_url: str, observed_at: str, expected: datetime
) -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    result = cli(
        "ingest", "-", "--observed-at", observed_at, "--db", db_url, stdin=job("j1", created)
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    with engine.connect() as conn:
        seen = conn.execute(select(Snapshot.first_observed_at)).scalars().all()
    assert seen == [expected]
    # A second file, seen later, moves the snapshot on.
    later = cli(
        "ingest", "-", "--observed-at", "2026-01-04", "--db", db_url, stdin=job("j1", created)
    )
    assert later.exit_code == 0, later.output


def test_ingest_refuses_a_bad_time_in_one_line(engine: Engine, db_url: str) -> None:
    result = cli("ingest", "-", "--observed-at", "last tuesday", "--db", db_url, stdin="{}")
    assert result.exit_code == 2
    assert "'last tuesday' is not a time: use an ISO date or time" in result.output
    assert "Traceback" not in result.output


def test_help_shows_examples_not_strftime_patterns() -> None:
    for command in ("ingest", "jobs", "export", "cost", "throughput"):
        text = cli(command, "--help").output
        assert "%Y" not in text, command
        assert "2026-01-31T12:00Z" in text, command


def test_since_and_until_alike_in_the_cli_and_the_library(engine: Engine, db_url: str) -> None:
    now = datetime.now(UTC)
    for job_id, age in (("old", timedelta(days=10)), ("new", timedelta(hours=1))):
        stdin = job(job_id, now - age)
        assert cli("ingest", "-", "--db", db_url, stdin=stdin).exit_code == 0
    assert analysis.load_jobs(db_url, since="7d")["job_id"].tolist() == ["new"]
    assert analysis.load_jobs(engine, until="2d")["job_id"].tolist() == ["old"]
    day = (now - timedelta(days=10)).strftime("%Y-%m-%d")
    assert analysis.load_jobs(engine, since=day, until="7d")["job_id"].tolist() == ["old"]
    listed = cli("jobs", "--since", "7d", "--format", "json", "--db", db_url)
    assert [j["job_id"] for j in json.loads(listed.stdout)] == ["new"]
    zulu = (now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%MZ")
    listed = cli("jobs", "--until", zulu, "--format", "json", "--db", db_url)
    assert [j["job_id"] for j in json.loads(listed.stdout)] == ["old"]
    with pytest.raises(UsageProblem, match="since: 'last week' is not a time"):
        analysis.load_jobs(engine, since="last week")


def test_a_bad_time_is_refused_before_any_store_is_opened(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    with pytest.raises(UsageProblem, match="until: 'soon' is not a time"):
        analysis.load_jobs(str(missing), until="soon")
    assert not missing.exists()
