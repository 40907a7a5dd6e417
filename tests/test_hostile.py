"""Hostile but realistic APIs and inputs, one test per way they broke ftlog's promise
("every job the API sends is recorded or named in an error"), over a real loopback server
and on SQLite and Postgres alike."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select, text

from ftlog import notify, store
from ftlog.cli import main
from ftlog.collector import SnapshotPlan
from ftlog.db import create_store_engine, ensure_schema
from ftlog.models import (
    CollectorRun,
    Event,
    Hyperparameters,
    Job,
    RawPayload,
    Snapshot,
    Source,
)
from ftlog.parse import canonical_json, parse_job
from ftlog.redact import REDACTED
from tests.helpers import T0, TOKEN, count, store_rows
from tests.hostile import LIST, HostileAPI, job, page, run, serve


def bodies(engine: Engine, job_id: str) -> list[Any]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(RawPayload.body)
            .join(Job, Job.id == RawPayload.job_pk)
            .where(Job.job_id == job_id)
            .order_by(RawPayload.first_observed_at, RawPayload.id)
        ).scalars()
        return [json.loads(body) for body in rows]


def stored_job(engine: Engine, job_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(Job).where(Job.job_id == job_id)).one()


UNSTORABLE = [
    job("ftjob-nul", "failed", error={"code": "x", "message": "bad\x00byte", "param": None}),
    job("ftjob-long-status", "s" * 60),
    job("j" * 250),
    job("ftjob-long-model", model="m" * 400),
    job("ftjob-nan", hyperparameters={"learning_rate": math.nan, "batch_size": 8}),
    job("ftjob-inf", hyperparameters={"warmup_ratio": math.inf, "custom": -math.inf}),
    job("ftjob-2-63", trained_tokens=2**63, trained_steps=-(2**70)),
    job("ftjob-surrogate", suffix="cut emoji \ud83d", model="llama\udc00"),
    job("ftjob-float-int", trained_tokens=1.5, seed="42", total_steps=1e300),
    job(
        "ftjob-junk",
        result_files={"not": "a list"},
        metadata=[1],
        integrations=[math.nan],
        error="not an object",
        hyperparameters=[1, 2],
        estimated_finish=10**12,
    ),
]


def hostile_listing(extra_pages: int = 1) -> HostileAPI:
    """Page 1: the unstorable values between two good jobs; then good pages; then the end."""
    good = [job(f"ftjob-good-{n}", created_at=T0 - n) for n in range(extra_pages + 2)]
    pages = [[good[0], *UNSTORABLE, good[1]], *([g] for g in good[2:])]

    def listing(_path: str, query: dict[str, str]) -> Any:
        after = query.get("after")
        index = (
            0 if after is None else next(i + 1 for i, p in enumerate(pages) if p[-1]["id"] == after)
        )
        return page(pages[index], index + 1 < len(pages))

    return HostileAPI({LIST: listing})


# 1 and 2 ---------------------------------------------------------------------------------


def test_unstorable_values_cost_nothing_and_are_kept_whole(engine: Engine) -> None:
    api = hostile_listing()
    with serve(api) as base:
        summary = run(engine, base)
    assert summary.errors == [] and summary.exit_code == 0
    assert summary.list_completed
    assert count(engine, Job) == len(UNSTORABLE) + 3  # every job, every page
    # The typed columns hold NULL where they could not hold the value...
    assert stored_job(engine, "ftjob-nul").error_message is None
    assert stored_job(engine, "ftjob-nul").error_code == "x"
    assert stored_job(engine, "ftjob-long-status").status == "s" * 60  # TEXT: kept
    assert stored_job(engine, "j" * 250).job_id == "j" * 250
    assert stored_job(engine, "ftjob-2-63").trained_tokens is None
    assert stored_job(engine, "ftjob-surrogate").suffix is None
    assert stored_job(engine, "ftjob-float-int").trained_tokens is None
    with engine.connect() as conn:
        nan = conn.execute(select(Hyperparameters).join(Job).where(Job.job_id == "ftjob-nan")).one()
    assert nan.learning_rate is None and nan.batch_size == 8 and nan.extra == {}
    # ...the run says so, naming the job and the field...
    said = "\n".join(summary.warnings)
    for phrase in [
        "ftjob-nul: 'error.message' holds a NUL byte",
        "ftjob-2-63: 'trained_tokens'",
        "'suffix' is not valid Unicode",
        'hyperparameter "learning_rate"',
        "ftjob-float-int: 'trained_tokens' should be a whole number",
    ]:
        assert phrase in said
    # ...and the raw payload holds every value exactly.
    for sent in UNSTORABLE:
        (kept,) = bodies(engine, sent["id"])
        assert canonical_json(kept) == canonical_json(sent)


def test_the_same_hostile_input_gives_the_same_rows_on_sqlite_and_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    engines = [
        create_store_engine(f"sqlite:///{tmp_path / 'a.db'}"),
        create_store_engine(postgres_url),
    ]
    try:
        for engine in engines:
            ensure_schema(engine)
            with serve(hostile_listing()) as base:
                assert run(engine, base).exit_code == 0
        sqlite_rows, postgres_rows = (store_rows(e) for e in engines)
        assert sqlite_rows == postgres_rows
        assert len(sqlite_rows["raw_payloads"]) == len(UNSTORABLE) + 3
    finally:
        for engine in engines:
            engine.dispose()


def test_ingest_takes_the_same_values_without_a_traceback(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "hostile.jsonl"
    path.write_text("".join(json.dumps(obj) + "\n" for obj in UNSTORABLE))
    result = CliRunner().invoke(main, ["ingest", str(path), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "warning: job ftjob-nul" in result.output
    assert count(engine, Job) == len(UNSTORABLE)


# 3 ---------------------------------------------------------------------------------------


def test_a_job_listed_twice_on_one_page_costs_nothing(engine: Engine) -> None:
    first = job("ftjob-twice", "running", trained_tokens=100)
    second = job("ftjob-twice", "running", trained_tokens=200)
    api = HostileAPI(
        {LIST: lambda *_: page([job("ftjob-a"), first, second, job("ftjob-b")], False)}
    )
    with serve(api) as base:
        summary = run(engine, base)
    assert summary.exit_code == 0 and count(engine, Job) == 3
    assert stored_job(engine, "ftjob-twice").trained_tokens == 100  # the first one listed
    assert [b["trained_tokens"] for b in bodies(engine, "ftjob-twice")] == [100, 200]
    assert summary.result.conflicts == 1
    assert any("ftjob-twice: another object" in w for w in summary.warnings)


def test_ingesting_two_objects_of_a_job_at_one_time_costs_nothing(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    at = ["--observed-at", "2026-01-02T03:04:05Z", "--db", db_url]
    for tokens in (100, 200):
        path = tmp_path / f"{tokens}.json"
        path.write_text(
            json.dumps([job("ftjob-other"), job("ftjob-x", "running", trained_tokens=tokens)])
        )
        result = CliRunner().invoke(main, ["ingest", str(path), *at])
        assert result.exit_code == 0, result.output
    assert count(engine, Job) == 2 and count(engine, Snapshot) == 2
    assert stored_job(engine, "ftjob-x").trained_tokens == 100
    assert len(bodies(engine, "ftjob-x")) == 2
    assert "another object for an observation time already recorded" in result.output


# 4 ---------------------------------------------------------------------------------------


def test_an_empty_page_that_says_has_more_is_reported_and_not_a_complete_listing(
    engine: Engine,
) -> None:
    glitch = {"on": True}
    older = [job(f"ftjob-old-{n}", created_at=T0 - 100 - n) for n in range(3)]

    def listing(_path: str, query: dict[str, str]) -> Any:
        if query.get("after") is None:
            return page([job("ftjob-new")], True)
        if glitch["on"]:
            return page([], True)
        return page(older, False)

    api = HostileAPI({LIST: listing})
    with serve(api) as base:
        broken = run(engine, base)
        assert broken.exit_code == 1 and not broken.list_completed
        (error,) = broken.errors
        assert "empty page that says has_more (after=ftjob-new)" in error
        with engine.connect() as conn:
            assert conn.execute(select(Source.listed_at)).scalar_one() is None
            assert conn.execute(select(CollectorRun.list_completed)).scalar_one() is False
        glitch["on"] = False
        fixed = run(engine, base)  # not a complete listing before: this one pages on
    assert fixed.exit_code == 0 and fixed.list_completed
    assert count(engine, Job) == 4


def test_an_api_that_ignores_the_cursor_is_said_once_and_unfinished_jobs_still_refresh(
    engine: Engine,
) -> None:
    listed = [job("ftjob-a"), job("ftjob-b", "running")]
    api = HostileAPI(
        {
            LIST: lambda *_: page(listed, True),  # has_more forever, whatever the cursor
            f"{LIST}/ftjob-unlisted": lambda *_: (200, job("ftjob-unlisted", "succeeded")),
        }
    )
    with serve(api) as base:
        # A job recorded earlier, still running, that the broken list never shows.
        ingested = CliRunner().invoke(
            main,
            [
                "ingest",
                "-",
                "--db",
                str(engine.url),
                "--base-url",
                base,
                "--source",
                "hostile",
            ],
            input=json.dumps(job("ftjob-unlisted", "running")),
        )
        assert ingested.exit_code == 0, ingested.output
        summary = run(engine, base)
    assert summary.exit_code == 1
    (error,) = summary.errors
    assert "ignore the cursor" in error and "after=ftjob-b" in error
    assert summary.result.seen == 3  # the repeated page counted once, plus the refresh
    assert f"/v1{LIST}/ftjob-unlisted" in api.paths()
    assert stored_job(engine, "ftjob-unlisted").status == "succeeded"


# 5 ---------------------------------------------------------------------------------------


def test_a_404_for_one_jobs_events_costs_no_other_job(engine: Engine) -> None:
    jobs = [job(f"ftjob-{n}", created_at=T0 - n) for n in range(4)]  # ftjob-0 is the newest

    def events(path: str, _query: dict[str, str]) -> Any:
        job_id = path.split("/")[-2]
        if job_id == "ftjob-0":
            return 404, {"error": {"message": "job not found"}}
        return page([{"id": f"ev-{job_id}", "created_at": T0, "message": "hello"}], False)

    api = HostileAPI(
        {
            LIST: lambda *_: page(jobs, False),
            "*": lambda p, q: events(p, q) if p.endswith("/events") else page([], False),
        }
    )
    plan = SnapshotPlan(details=("events", "checkpoints"), concurrency=2)
    with serve(api) as base:
        summary = run(engine, base, plan)
        assert summary.exit_code == 0, summary.errors
        assert count(engine, Event) == 3
        assert any("ftjob-0: the API has none for it (HTTP 404" in w for w in summary.warnings)
        asked = len(api.requests)
        again = run(engine, base, plan)  # the deleted job is not asked again
    assert again.exit_code == 0 and len(api.requests) == asked + 1  # the list only


# 6 ---------------------------------------------------------------------------------------


def test_ids_that_are_not_path_segments_are_refused_by_name_and_never_requested(
    engine: Engine, db_url: str
) -> None:
    listed = [job(".", "running"), job("..", "running"), job("a/b", "running"), job("ftjob-ok")]
    api = HostileAPI({LIST: lambda *_: page(listed, False), "*": lambda *_: page([], False)})
    with serve(api) as base:
        summary = run(engine, base, SnapshotPlan(concurrency=1))
        rerun = run(engine, base, SnapshotPlan(active_only=True, details=(), concurrency=1))
        cli = CliRunner().invoke(
            main,
            ["snapshot", "..", "--base-url", base, "--db", db_url],
            env={"FTLOG_API_KEY": TOKEN},
        )
    assert count(engine, Job) == 4  # recorded from the list: the id is data
    assert set(api.paths()) == {
        f"/v1{LIST}",
        f"/v1{LIST}/ftjob-ok/events",
        f"/v1{LIST}/ftjob-ok/checkpoints",
    }
    said = "\n".join(summary.errors + rerun.errors)
    assert "the job id '.' would name another URL" in said and "id '..' would name" in said
    assert "holds a slash" in said
    assert cli.exit_code == 2 and "would name another URL" in cli.output


# 7 ---------------------------------------------------------------------------------------


class Webhook:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __enter__(self) -> str:
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_token_echoed_in_job_data_is_never_stored_shown_exported_or_sent(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    echoed = f"request with 'Authorization: Bearer {TOKEN}' was refused"
    state = {"status": "running"}

    def one_job(*_: Any) -> Any:
        error = {"code": TOKEN, "message": echoed, "param": None}
        failed = state["status"] == "failed"
        leaky = job("ftjob-leak", state["status"], error=error if failed else None)
        leaky |= {"suffix": f"x{TOKEN}y", TOKEN: "a key"}  # in a text, and as a key
        return page([leaky], False)

    api = HostileAPI({LIST: one_job, "*": lambda *_: page([], False)})
    env = {"FTLOG_API_KEY": TOKEN}
    webhook = Webhook()
    with serve(api) as base, webhook as hook_url:
        args = ["--base-url", base, "--db", db_url, "--notify-webhook", hook_url]
        first = CliRunner().invoke(main, ["snapshot", *args], env=env)
        state["status"] = "failed"
        second = CliRunner().invoke(main, ["snapshot", "-v", *args], env=env)
    assert first.exit_code == 0 and second.exit_code == 0, second.output
    stored = stored_job(engine, "ftjob-leak")
    assert stored.error_message == echoed.replace(TOKEN, REDACTED)
    assert stored.suffix == f"x{REDACTED}y"
    shown = CliRunner().invoke(main, ["show", "ftjob-leak", "--db", db_url])
    exported = CliRunner().invoke(main, ["export", "jobs", "-o", "-", "--db", db_url])
    raw = bodies(engine, "ftjob-leak")
    with engine.connect() as conn:
        everything = "\n".join(
            repr(row)
            for table in ("jobs", "raw_payloads", "status_history")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        )
    assert len(webhook.bodies) == 1  # running -> failed
    sent = webhook.bodies[0].decode()
    assert "ftjob-leak" in sent and REDACTED in sent
    for output in (
        first.output,
        second.output,
        shown.output,
        exported.output,
        everything,
        json.dumps(raw),
        sent,
    ):
        assert TOKEN not in output
    assert REDACTED in shown.output


def test_the_token_is_scrubbed_from_ingested_objects_too(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(job("ftjob-saved", error={"message": f"key {TOKEN}"})))
    result = CliRunner().invoke(
        main, ["ingest", str(path), "--db", db_url], env={"FTLOG_API_KEY": TOKEN}
    )
    assert result.exit_code == 0, result.output
    assert TOKEN not in json.dumps(bodies(engine, "ftjob-saved"))


# 9 ---------------------------------------------------------------------------------------


def test_ingesting_the_same_observation_twice_adds_and_counts_nothing(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps([job("ftjob-a", "running", trained_tokens=5), job("ftjob-b")]))
    args = ["ingest", str(path), "--observed-at", "2026-01-02T03:04:05Z", "--db", db_url]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = store_rows(engine, times=True)
    again = CliRunner().invoke(main, [*args, "--json"])
    assert again.exit_code == 0
    assert store_rows(engine, times=True) == before
    with engine.connect() as conn:
        assert set(conn.execute(select(Snapshot.observations)).scalars()) == {1}
    assert json.loads(again.stdout)["jobs_changed"] == 0


# 10 --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_records_the_run_as_interrupted(
    engine: Engine, db_url: str, sig: signal.Signals
) -> None:
    jobs = [job(f"ftjob-{n}", "running", created_at=T0 - n) for n in range(30)]
    api = HostileAPI(
        {
            LIST: lambda *_: page(jobs, False),
            "*": lambda p, _q: (200, job(p.rsplit("/", 1)[1], "running")),
        },
        delays={f"{LIST}/ftjob-{n}": 0.2 for n in range(30)},
    )
    with serve(api) as base:
        assert run(engine, base).exit_code == 0  # a first listing: the jobs are known
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ftlog",
                "snapshot",
                "--active",
                "--concurrency",
                "2",
                "--no-events",
                "--no-checkpoints",
                "--source",
                "hostile",
                "--base-url",
                base,
                "--db",
                db_url,
            ],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "FTLOG_API_KEY": TOKEN},
        )
        deadline = time.monotonic() + 30
        while sum("/ftjob-" in p for p in api.paths()) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert f"interrupted by {sig.name}" in err and "Traceback" not in err
    with engine.connect() as conn:
        outcomes = conn.execute(select(CollectorRun.outcome).order_by(CollectorRun.id)).all()
    assert [o for (o,) in outcomes] == ["ok", "interrupted"]


# 11 --------------------------------------------------------------------------------------


def test_a_hung_notify_command_is_killed_with_its_children_within_one_budget(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "COMMAND_TIMEOUT_S", 0.5)
    pids = tmp_path / "pids"
    hung = notify.Target("command", f"sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait")
    source_id = store.ensure_source(engine, "files", "http://127.0.0.1:9/v1")
    for status in ("running", "succeeded"):  # four status changes queued for the command
        observed = [
            store.Observation(parse_job(job(f"ftjob-{n}", status)), datetime.now(UTC))
            for n in range(4)
        ]
        store.save_observations(engine, source_id, observed, [hung.channel])
    started = time.monotonic()
    result = notify.deliver_pending(engine, [hung], budget_s=1.2)
    assert time.monotonic() - started < 5
    assert result.sent == 0
    assert any("timed out" in f for f in result.failed)
    assert any("left for the next run" in f for f in result.failed)
    started_pids = list(map(int, pids.read_text().split()))
    assert len(started_pids) >= 4  # the shell and its sleep, at least twice
    for pid in started_pids:
        assert not _alive(pid)


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" not in status.read_text()
    except FileNotFoundError:
        return False
