"""More hostile APIs, careless users and cron overlaps, each a way ftlog's promise ("every
job the API sends is recorded or named in an error; a history never wrong, never lost") or
its error contract still breaks. Over a real loopback server, on SQLite and Postgres."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import Engine, select

from ftlog import store
from ftlog.backoff import RetryPolicy
from ftlog.cli import main
from ftlog.client import FineTuningClient
from ftlog.collector import SnapshotPlan, snapshot
from ftlog.errors import APIError
from ftlog.models import Job
from tests.helpers import T0, TOKEN
from tests.hostile import JOBS_ONLY, LIST, HostileAPI, job, page, run, serve


def paged(pages: list[list[Any]]) -> Any:
    """A list route serving ``pages`` in order, following ``after``."""

    def listing(_path: str, query: dict[str, str]) -> Any:
        after = query.get("after")
        index = 0
        if after is not None:
            index = next(i + 1 for i, p in enumerate(pages) if p[-1].get("id") == after)
        return page(pages[index], index + 1 < len(pages))

    return listing


def stored_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(Job.job_id)).scalars())


def test_a_job_that_failed_to_parse_once_is_not_lost_behind_a_complete_listing(
    engine: Engine,
) -> None:
    """A listing in which one job could not be recorded is not a complete listing: the next
    incremental run must page to that job again, not stop at an older finished one."""
    glitch = {"on": True}
    settled = job("ftjob-settled", "succeeded", T0)

    def listing(path: str, query: dict[str, str]) -> Any:
        older = job("ftjob-older", "running", T0 - 10)
        if glitch["on"]:
            older["status"] = None  # a transient glitch in the API's answer
        return paged([[settled], [older]])(path, query)

    with serve(HostileAPI({LIST: listing})) as base:
        first = run(engine, base)
        assert first.exit_code == 1 and "ftjob-older" in first.errors[0]
        glitch["on"] = False
        second = run(engine, base)
    # The running job must be recorded now, or named again; it was silently lost instead.
    assert "ftjob-older" in stored_ids(engine) or any("ftjob-older" in e for e in second.errors)


def event(event_id: str, created_at: int, message: str = "step") -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "fine_tuning.job.event",
        "created_at": created_at,
        "level": "info",
        "message": message,
    }


def event_ids(engine: Engine) -> set[str]:
    from ftlog.models import Event

    with engine.connect() as conn:
        return set(conn.execute(select(Event.event_id)).scalars())


def test_an_event_whose_clock_runs_a_second_behind_is_not_lost(engine: Engine) -> None:
    """Two emitters a second apart: the newest event (listed first) has a created_at just
    before the newest one stored. It is new (an id never seen) and must be recorded."""
    state: dict[str, Any] = {
        "tokens": 100,
        "events": [event("ev-2", T0 + 100), event("ev-1", T0 + 50)],
    }
    api = HostileAPI(
        {
            LIST: lambda *_: page(
                [job("ftjob-e", "running", trained_tokens=state["tokens"])], False
            ),
            f"{LIST}/ftjob-e": lambda *_: (
                200,
                job("ftjob-e", "running", trained_tokens=state["tokens"]),
            ),
            f"{LIST}/ftjob-e/events": lambda *_: page(state["events"], False),
            f"{LIST}/ftjob-e/checkpoints": lambda *_: page([], False),
        }
    )
    plan = SnapshotPlan(details=("events",), concurrency=1)
    with serve(api) as base:
        assert run(engine, base, plan).exit_code == 0
        assert event_ids(engine) == {"ev-1", "ev-2"}
        state["tokens"] = 200  # the job changed: its events are asked again
        state["events"] = [event("ev-3", T0 + 99, "late emitter"), *state["events"]]
        assert run(engine, base, plan).exit_code == 0
    assert event_ids(engine) == {"ev-1", "ev-2", "ev-3"}


def test_one_event_dated_in_the_future_does_not_hide_every_later_event(engine: Engine) -> None:
    """A worker whose clock is a year ahead sends one event; every event after it (with true
    times) must still be recorded, not taken as already known."""
    state: dict[str, Any] = {
        "tokens": 100,
        "events": [event("ev-skewed", T0 + 365 * 86400), event("ev-1", T0)],
    }
    api = HostileAPI(
        {
            LIST: lambda *_: page(
                [job("ftjob-e", "running", trained_tokens=state["tokens"])], False
            ),
            f"{LIST}/ftjob-e": lambda *_: (
                200,
                job("ftjob-e", "running", trained_tokens=state["tokens"]),
            ),
            f"{LIST}/ftjob-e/events": lambda *_: page(state["events"], False),
        }
    )
    plan = SnapshotPlan(details=("events",), concurrency=1)
    with serve(api) as base:
        assert run(engine, base, plan).exit_code == 0
        state["tokens"] = 200
        state["events"] = [event("ev-2", T0 + 60), *state["events"]]
        assert run(engine, base, plan).exit_code == 0
    assert event_ids(engine) == {"ev-skewed", "ev-1", "ev-2"}


def test_a_deadlock_with_an_overlapping_run_while_saving_events_is_retried_not_fatal(
    postgres_url: str,
) -> None:
    """Cron overlap on Postgres: another run's transaction holds job B's row and then wants
    job A's, while this run's events transaction marks A then B. Postgres breaks the cycle by
    aborting one side; ftlog retries job saves after a deadlock, and must do the same for
    events (today the run dies with 'database error: deadlock detected', its remaining work
    undone, and its collector_runs row says 'ok')."""
    import threading
    import time

    from sqlalchemy import text

    from ftlog.db import create_store_engine, ensure_schema
    from ftlog.models import CollectorRun

    engine = create_store_engine(postgres_url)
    other = create_store_engine(postgres_url)
    ensure_schema(engine)
    jobs = [job("ftjob-a", "running", T0), job("ftjob-b", "running", T0 - 1)]
    holder = other.connect()
    cycle_made = threading.Event()

    def close_the_cycle() -> None:
        # Wait until this run's transaction waits for B's row, then ask for A's row.
        with other.connect() as watcher:
            while not watcher.execute(
                text("SELECT count(*) FROM pg_locks WHERE NOT granted")
            ).scalar():
                time.sleep(0.01)
        holder.execute(text("UPDATE jobs SET last_seen_at = last_seen_at WHERE job_id = 'ftjob-a'"))
        holder.rollback()
        cycle_made.set()

    def events_of(path: str, _query: dict[str, str]) -> Any:
        if path.endswith("ftjob-b/events") and not holder.in_transaction():
            holder.execute(text("SELECT 1 FROM jobs WHERE job_id = 'ftjob-b' FOR UPDATE"))
            threading.Thread(target=close_the_cycle, daemon=True).start()
        return page([event(f"ev-{path.split('/')[3]}", T0)], False)

    api = HostileAPI({LIST: lambda *_: page(jobs, False), "*": events_of})
    plan = SnapshotPlan(details=("events",), concurrency=1)
    raised: Exception | None = None
    try:
        with serve(api) as base:
            try:
                summary = run(engine, base, plan)
            except Exception as err:  # what the CLI turns into 'database error: ...'
                raised = err
        assert cycle_made.wait(10)
        with engine.connect() as conn:
            outcome = conn.execute(select(CollectorRun.outcome)).scalar_one()
        assert raised is None, f"the run died ({raised!r}) and was recorded as {outcome!r}"
        assert summary.exit_code == 0 and event_ids(engine) == {"ev-ftjob-a", "ev-ftjob-b"}
    finally:
        holder.close()
        engine.dispose()
        other.dispose()


def test_cron_runs_that_start_together_on_a_new_store_all_succeed(
    db_url: str, tmp_path: Path
) -> None:
    """Two profiles' cron lines (one shared store) fire in the same second on the first day:
    each creates the schema of the empty store at once. The README: overlapping collectors
    are safe (the second waits). Today all but one fail at once, exit 1, with
    'database error: database is locked' (SQLite) or a duplicate pg_type key (Postgres)."""
    import subprocess
    import sys

    saved = tmp_path / "one.json"
    saved.write_text(json.dumps(job("ftjob-a")))
    command = [sys.executable, "-m", "ftlog", "ingest", str(saved), "--db", db_url]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outcomes = [(r.wait(120), r.stderr.read() if r.stderr else "") for r in runs]
    assert [code for code, _ in outcomes] == [0, 0, 0, 0], outcomes


def raw_list(*items: bytes) -> Any:
    """A list route whose job objects are given as raw JSON bytes."""
    body = b'{"object":"list","has_more":false,"data":[' + b",".join(items) + b"]}"
    return lambda *_: (200, body)


GOOD = json.dumps(job("ftjob-good")).encode()


def test_a_5000_digit_integer_in_one_job_costs_only_that_job(engine: Engine) -> None:
    """README: integers of any size are kept exactly in the raw payload, NULL in the typed
    column. Python refuses to parse an integer over 4300 digits, so today the whole page is
    'not JSON': the good job beside it is neither recorded nor named, on every run."""
    big = b'{"id":"ftjob-big","status":"succeeded","created_at":%d,"seed":%s}' % (T0, b"9" * 5000)
    with serve(HostileAPI({LIST: raw_list(GOOD, big)})) as base:
        summary = run(engine, base)
    assert "ftjob-good" in stored_ids(engine), summary.errors


def test_a_deeply_nested_value_from_the_api_is_no_traceback(db_url: str) -> None:
    """A job whose metadata nests 5000 arrays deep: json raises RecursionError, which
    escapes as a traceback (exit 1) instead of a one-line error, and the page is lost."""
    deep = b'{"id":"ftjob-deep","status":"succeeded","created_at":%d,"metadata":{"a":%s%s}}' % (
        T0,
        b"[" * 5000,
        b"]" * 5000,
    )
    with serve(HostileAPI({LIST: raw_list(GOOD, deep), "*": lambda *_: page([], False)})) as base:
        result = CliRunner().invoke(
            main,
            ["snapshot", "--base-url", base, "--db", db_url],
            env={"FTLOG_API_KEY": TOKEN},
        )
    assert not isinstance(result.exception, RecursionError), result.exception
    assert result.exit_code == 1


def test_ingest_of_hostile_files_is_one_line_never_a_traceback(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """A careless user's files: not UTF-8 (a UTF-16 export), a 5000-digit integer, nesting
    past Python's recursion limit. Each must be a one-line error (exit 1 or 2), never a
    traceback (today: UnicodeDecodeError, ValueError, RecursionError)."""
    files = {
        "utf16.json": json.dumps(job("ftjob-u")).encode("utf-16"),
        "big.jsonl": b'{"id":"ftjob-big","status":"succeeded","created_at":%d,"seed":%s}\n'
        % (T0, b"9" * 5000),
        "deep.jsonl": b'{"id":"ftjob-deep","status":"succeeded","created_at":%d,"metadata":%s%s}\n'
        % (T0, b"[" * 5000, b"]" * 5000),
    }
    crashed = {}
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content)
        result = CliRunner().invoke(main, ["ingest", str(path), "--db", db_url])
        crash = result.exception is not None and not isinstance(result.exception, SystemExit)
        if crash or "Traceback" in result.output:
            crashed[name] = repr(result.exception)
        elif name == "big.jsonl":  # read whole: the seed's column is NULL, the payload has it
            assert result.exit_code == 0 and "ftjob-big" in result.output, result.output
        else:
            assert result.exit_code == 2 and name in result.output, result.output
    assert crashed == {}


def test_an_in_memory_store_is_refused_not_recorded_into_and_thrown_away(tmp_path: Path) -> None:
    """A careless FTLOG_DATABASE_URL=sqlite:// (the path forgotten): today snapshot records
    every job into memory, exits 0 and the history is gone. A store must be a place that
    keeps it: refuse with exit 2, as a missing folder is refused."""
    with serve(HostileAPI({LIST: lambda *_: page([job("ftjob-a")], False)})) as base:
        for url in ("sqlite://", "sqlite:///:memory:"):
            result = CliRunner().invoke(
                main,
                ["snapshot", "--no-events", "--no-checkpoints", "--base-url", base, "--db", url],
                env={"FTLOG_API_KEY": TOKEN},
            )
            assert result.exit_code == 2, (url, result.output)


def test_a_body_that_drips_in_byte_by_byte_cannot_hold_a_request_past_its_timeout() -> None:
    """README: 'Every request has a timeout' and a bounded total wait. httpx's timeout is per
    socket read, so a server (or broken proxy) that sends one byte every 0.1 s keeps a
    request with a 0.5 s timeout alive for as long as it likes (a cron run that never ends)."""
    import socket
    import threading
    import time

    body = json.dumps(page([job("ftjob-a")], False)[1]).encode() + b" " * 40
    listener = socket.create_server(("127.0.0.1", 0))

    def drip() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        try:
            for byte in body:
                conn.sendall(bytes([byte]))
                time.sleep(0.1)
        except OSError:
            pass
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    retry = RetryPolicy(max_attempts=1)
    outcome: Any
    with FineTuningClient(base, TOKEN, timeout=0.5, retry=retry) as client:
        try:
            outcome = client.list_jobs()
        except APIError as err:
            outcome = err
    listener.close()
    # The body took over 10 s, twenty times the timeout: the request must have given up.
    assert isinstance(outcome, APIError), "a 10 s drip-fed body passed a 0.5 s timeout"


def test_the_token_url_encoded_in_job_data_is_scrubbed_too(engine: Engine) -> None:
    """An API echoing the failed request's URL puts the token there percent-encoded
    (a token with '+', '/' or '='): README says it is scrubbed from every text."""
    from urllib.parse import quote

    token = "sk-Ab+Cd/Ef=Gh"
    message = f"GET https://api.example/v1/x?key={quote(token, safe='')} failed"
    failed = job("ftjob-t", "failed", error={"code": "e", "message": message, "param": None})
    api = HostileAPI({LIST: lambda *_: page([failed], False)})
    with serve(api) as base, FineTuningClient(base, token, retry=RetryPolicy(max_attempts=1)) as c:
        snapshot(engine, c, store.ensure_source(engine, "hostile", base), JOBS_ONLY)
    with engine.connect() as conn:
        stored = conn.execute(select(Job.error_message)).scalar_one()
    assert stored is not None and quote(token, safe="") not in stored


def test_a_running_job_whose_object_stays_the_same_still_gets_its_new_events(
    engine: Engine,
) -> None:
    """OpenAI: trained_tokens stays null and the object the same while a job trains; its
    progress is in its metrics events, which every run must fetch while it runs."""
    running = job("ftjob-o", "running", T0, trained_tokens=None)
    state = {"events": [event("ev-1", T0 + 10)]}
    api = HostileAPI(
        {
            LIST: lambda *_: page([running], False),
            f"{LIST}/ftjob-o": lambda *_: (200, running),
            f"{LIST}/ftjob-o/events": lambda *_: page(state["events"], False),
        }
    )
    plan = SnapshotPlan(details=("events",), concurrency=1)
    with serve(api) as base:
        assert run(engine, base, plan).exit_code == 0
        state["events"] = [event("ev-2", T0 + 20), *state["events"]]
        assert run(engine, base, plan).exit_code == 0
    assert event_ids(engine) == {"ev-1", "ev-2"}


def test_an_error_object_answered_for_a_named_job_names_that_job(db_url: str) -> None:
    api = HostileAPI(
        {f"{LIST}/ftjob-wanted": lambda *_: (200, {"error": {"message": "try later"}})}
    )
    with serve(api) as base:
        result = CliRunner().invoke(
            main,
            [
                "snapshot",
                "ftjob-wanted",
                "--no-events",
                "--no-checkpoints",
                "--base-url",
                base,
                "--db",
                db_url,
            ],
            env={"FTLOG_API_KEY": TOKEN},
        )
    assert result.exit_code == 1 and "job ftjob-wanted:" in result.output, result.output
