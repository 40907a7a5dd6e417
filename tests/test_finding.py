"""Finding jobs: newest first with --limit, hints for filter values that select nothing,
model and source patterns, the full error message, shell completion."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from ftlog import analysis
from ftlog.cli import main
from ftlog.parse import parse_job
from ftlog.store import Observation, ensure_source, save_observations

BASE = datetime(2026, 1, 1, tzinfo=UTC)
LONG_ERROR = (
    "CUDA out of memory: tried to allocate 12.00 GiB (GPU 0; 79.15 GiB total capacity; "
    "70.02 GiB already allocated); reduce batch_size or context_length and try again"
)
JOBS: list[tuple[str, str, str, str, int]] = [
    # id, source, model, status, minutes after BASE
    ("ftjob-a1", "studio", "meta-llama/Llama-3.1-8B-Instruct", "succeeded", 0),
    ("ftjob-a2", "studio", "meta-llama/Llama-3.1-70B-Instruct", "running", 10),
    ("ftjob-b1", "studio", "Qwen/Qwen2.5-7B", "failed", 20),
    ("ftjob-b2", "staging", "Qwen/Qwen2.5-32B", "paused", 30),
    ("ftjob-c1", "staging", "meta-llama/Llama-3.1-8B-Instruct", "queued", 40),
]


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def store(engine: Engine, db_url: str) -> str:
    sources = {name: ensure_source(engine, name, f"https://{name}.example/v1") for name in
               ("studio", "staging")}  # fmt: skip
    for job_id, source, model, status, minutes in JOBS:
        created = BASE + timedelta(minutes=minutes)
        obj: dict[str, Any] = {
            "id": job_id,
            "object": "fine_tuning.job",
            "model": model,
            "status": status,
            "created_at": int(created.timestamp()),
        }
        if status == "failed":
            obj["error"] = {"code": "oom", "message": LONG_ERROR, "param": None}
        save_observations(engine, sources[source], [Observation(parse_job(obj), created)])
    return db_url


def ids(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [job["job_id"] for job in json.loads(result.stdout)]


def test_jobs_lists_newest_first(store: str) -> None:
    assert ids(cli("jobs", "--db", store, "--format", "json")) == [
        "ftjob-c1", "ftjob-b2", "ftjob-b1", "ftjob-a2", "ftjob-a1",
    ]  # fmt: skip
    table = cli("jobs", "--db", store).stdout.splitlines()
    assert table[2].startswith("ftjob-c1") and table[-1].startswith("ftjob-a1")


def test_limit_keeps_the_newest(store: str) -> None:
    assert ids(cli("jobs", "--db", store, "-n", "2", "--format", "json")) == [
        "ftjob-c1", "ftjob-b2",
    ]  # fmt: skip
    limited = cli("jobs", "--db", store, "--limit", "1", "--status", "failed", "--format", "csv")
    assert limited.stdout.splitlines()[1].split(",")[1] == "ftjob-b1"
    assert cli("jobs", "--db", store, "--limit", "0").exit_code == 2


def test_a_mistyped_status_is_an_error_with_a_hint(store: str) -> None:
    result = cli("jobs", "--db", store, "--status", "runing")
    assert result.exit_code == 2
    assert result.output == "Error: unknown status 'runing' (did you mean running?)\n"
    far = cli("export", "jobs", "--db", store, "--status", "xyz")
    assert far.exit_code == 2 and "(statuses: cancelled, failed, paused, queued" in far.output


def test_a_documented_or_recorded_status_is_no_error(store: str) -> None:
    cancelled = cli("jobs", "--db", store, "--status", "cancelled")
    assert (cancelled.exit_code, cancelled.output) == (0, "(no jobs)\n")
    assert ids(cli("jobs", "--db", store, "--status", "paused", "--format", "json")) == [
        "ftjob-b2"
    ]  # OpenAI's paused: not documented by Nebius, but recorded


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("meta-llama/*", ["ftjob-c1", "ftjob-a2", "ftjob-a1"]),
        ("*8B-Instruct", ["ftjob-c1", "ftjob-a1"]),
        ("Qwen/Qwen2.5-?B", ["ftjob-b1"]),
        ("Qwen/Qwen2.5-[0-9][0-9]B", ["ftjob-b2"]),
        ("meta-llama/Llama-3.1-8B-Instruct", ["ftjob-c1", "ftjob-a1"]),
        ("qwen/*", []),  # case-sensitive, as the price table
    ],
)
def test_model_takes_the_price_table_s_patterns(
    store: str, pattern: str, expected: list[str]
) -> None:
    assert ids(cli("jobs", "--db", store, "--model", pattern, "--format", "json")) == expected
    frame = analysis.load_jobs(store, model=pattern)
    assert frame["job_id"].tolist() == expected[::-1]  # the library: oldest first


def test_source_takes_patterns_too(store: str) -> None:
    assert ids(cli("jobs", "--db", store, "--source", "stag*", "--format", "json")) == [
        "ftjob-c1", "ftjob-b2",
    ]  # fmt: skip
    assert len(ids(cli("jobs", "--db", store, "--source", "*", "--format", "json"))) == 5


def test_an_unknown_model_or_source_gets_a_hint(store: str) -> None:
    model = cli("jobs", "--db", store, "--model", "Llama-3.1-70B-Instruct")
    assert model.exit_code == 0 and model.stdout == "(no jobs)\n"
    assert model.stderr == (
        "note: no recorded job has model 'Llama-3.1-70B-Instruct' "
        "(did you mean meta-llama/Llama-3.1-70B-Instruct?)\n"
    )
    pattern = cli("export", "jobs", "--db", store, "--model", "mistral/*")
    assert pattern.exit_code == 0
    assert "no recorded job has model 'mistral/*'" in pattern.stderr
    assert pattern.stdout.startswith("source,job_id,")  # the header, nothing else
    source = cli("cost", "--db", store, "--source", "studoi")
    assert source.exit_code == 0
    assert "no recorded job has source 'studoi' (did you mean studio?)" in source.stderr


def test_show_prints_the_full_error_message(store: str) -> None:
    result = cli("show", "ftjob-b1", "--db", store)
    assert result.exit_code == 0, result.output
    assert LONG_ERROR in result.output


def test_shell_completion_offers_commands_and_statuses() -> None:
    def complete(words: str) -> list[str]:
        env = {
            "_FTLOG_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        }
        result = CliRunner().invoke(main, [], env=env, prog_name="ftlog")
        return [line.split(",", 1)[1] for line in result.output.splitlines()]

    assert "snapshot" in complete("ftlog sn")
    assert complete("ftlog jobs --status r") == ["running"]
    script = CliRunner().invoke(main, [], env={"_FTLOG_COMPLETE": "bash_source"}, prog_name="ftlog")
    assert "complete -o nosort -F _ftlog_completion ftlog" in script.output
    assert os.environ.get("_FTLOG_COMPLETE") is None
