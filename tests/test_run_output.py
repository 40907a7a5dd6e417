"""What a collector run prints: every failure (also under -q, as cron runs it), status
changes with -v, progress on a terminal, and the exit code."""

from __future__ import annotations

import io
import json
import socket
from typing import Any

import pytest
from click.testing import CliRunner

from ftlog.cli import main
from ftlog.cli.progress import TerminalProgress
from ftlog.simulator import JobSpec
from tests.helpers import T0, TOKEN, one_job
from tests.hostile import HostileAPI, job, page, serve

ENV = {"FTLOG_API_KEY": TOKEN}


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), env=ENV)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broken_apis() -> dict[str, HostileAPI]:
    return {
        "404 everywhere": HostileAPI({"*": lambda *_: (404, {"error": {"message": "nope"}})}),
        "a redirect": HostileAPI(
            {"*": lambda *_: (301, b"", {"Location": "https://elsewhere.example/v1/x"})}
        ),
        "a cursor cycle": HostileAPI({"*": lambda *_: page([job("a")], True)}),
    }


@pytest.mark.parametrize("case", list(broken_apis()))
def test_every_failure_is_printed_also_under_q(db_url: str, case: str) -> None:
    api = broken_apis()[case]
    with serve(api) as base:
        result = cli("snapshot", "-q", "--base-url", base, "--db", db_url)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines and all(line.startswith("ftlog snapshot: error: ") for line in lines), lines
    reason = {
        "404 everywhere": "HTTP 404",
        "a redirect": "redirect to https://elsewhere.example/v1/x",
        "a cursor cycle": "ignore the cursor",
    }[case]
    assert reason in result.output
    assert "jobs seen" not in result.output  # -q hides the summary, never the errors


def test_a_closed_port_is_printed_with_its_reason(db_url: str) -> None:
    base = f"http://127.0.0.1:{closed_port()}/v1"
    result = cli("snapshot", "-q", "--base-url", base, "--db", db_url)
    assert result.exit_code == 1
    assert "error: GET /fine_tuning/jobs: ConnectError" in result.output
    assert "check the network and the base URL" in result.output


def test_watch_exits_1_and_says_why_when_a_pass_fails(db_url: str) -> None:
    base = f"http://127.0.0.1:{closed_port()}/v1"
    result = cli("watch", "--interval", "0.1", "--base-url", base, "--db", db_url)
    assert result.exit_code == 1
    assert "ftlog watch: error: GET /fine_tuning/jobs: ConnectError" in result.output
    assert "every watched job has finished" not in result.output
    assert "1 pass had errors" in result.output


def test_watch_of_an_unknown_job_exits_1(db_url: str, sim_factory: Any) -> None:
    sim = sim_factory([one_job()], now=T0 + 100_000)
    result = cli(
        "watch", "ftjob-nope", "--interval", "0.1", "--base-url", sim.base_url, "--db", db_url
    )
    assert result.exit_code == 1
    assert "job ftjob-nope not found" in result.output
    assert "every watched job has finished" not in result.output


def test_v_prints_each_status_change(db_url: str, sim_factory: Any) -> None:
    spec = JobSpec(id="ftjob-v", created_at=T0, model="meta-llama/Llama-3.1-8B-Instruct")
    sim = sim_factory([spec], now=T0 + 1)
    base = ["--base-url", sim.base_url, "--db", db_url, "--no-events", "--no-checkpoints"]
    first = cli("snapshot", "-v", *base)
    sim.clock.set(spec.finished_at + 1)
    second = cli("snapshot", "-v", *base)
    quiet = cli("snapshot", *base)
    assert "ftjob-v (meta-llama/Llama-3.1-8B-Instruct): new → validating_files" in first.output
    assert "ftjob-v (meta-llama/Llama-3.1-8B-Instruct): validating_files → succeeded" in (
        second.output
    )
    assert "→" not in quiet.output


def test_json_summary_names_the_status_changes(db_url: str, sim_factory: Any) -> None:
    sim = sim_factory([one_job()], now=T0 + 1)
    result = cli("snapshot", "--json", "-q", "--base-url", sim.base_url, "--db", db_url)
    summary = json.loads(result.stdout)
    assert summary["status_changes"][0]["to_status"] == "validating_files"
    assert summary["outcome"] == "ok" and summary["list_completed"] is True


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_shows_counts_total_and_time_left_after_a_second() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = TerminalProgress(stream, clock)
    progress.start("listing jobs", None)
    progress.advance(100)
    assert stream.getvalue() == ""  # a quick run shows nothing
    clock.now = 2.0
    progress.advance(300)
    assert stream.getvalue().endswith("listing jobs: 400 (200/s)")
    progress.start("events", 400)
    clock.now = 12.0
    progress.advance(100)
    assert stream.getvalue().endswith("events: 100/400, about 30 s left")
    progress.close()
    assert stream.getvalue().endswith("\r\033[K")


def test_no_progress_when_quiet_or_not_a_terminal() -> None:
    assert TerminalProgress.for_terminal(quiet=True) is None
    assert TerminalProgress.for_terminal(quiet=False) is None  # pytest's stderr is no terminal
