"""Transition notifications: a command and a webhook, each once per transition."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from ftlog.collector import SnapshotPlan
from ftlog.models import Notification
from ftlog.notify import Target
from tests.helpers import TOKEN, one_job, run


class Receiver(ThreadingHTTPServer):
    """A webhook endpoint on loopback that records bodies and can fail the first requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers_seen: list[str] = []
        self.fail_first = fail_first
        self.attempts = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/secret-path-4242"


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.attempts += 1
            failing = self.server.attempts <= self.server.fail_first
            if not failing:
                self.server.bodies.append(json.loads(body))
                self.server.headers_seen.append(str(self.headers))
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    started: list[Receiver] = []

    def start(fail_first: int = 0) -> Receiver:
        receiver = Receiver(fail_first)
        threading.Thread(target=receiver.serve_forever, args=(0.05,), daemon=True).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.shutdown()
        receiver.server_close()


LIFE = [10, 100, 200, 2000]  # seconds after creation: validating, queued, running, succeeded
EXPECTED = [
    ("validating_files", "queued"),
    ("queued", "running"),
    ("running", "succeeded"),
]


def test_webhook_once_per_transition_even_when_runs_overlap(
    engine: Engine, sim_factory: Any, receiver_factory: Any
) -> None:
    spec = one_job(total_steps=10)
    sim = sim_factory([spec])
    receiver = receiver_factory()
    plan = SnapshotPlan(details=(), notify=[Target("webhook", receiver.url)])
    for offset in LIFE:
        sim.clock.set(spec.created_at + offset)
        runs = [threading.Thread(target=run, args=(engine, sim, plan)) for _ in range(3)]
        for thread in runs:
            thread.start()
        for thread in runs:
            thread.join()
    got = [(b["from_status"], b["to_status"]) for b in receiver.bodies]
    assert got == EXPECTED
    assert all(b["job_id"] == spec.id and "→" in b["text"] for b in receiver.bodies)
    assert not any(
        TOKEN in json.dumps(b) or TOKEN in h
        for b, h in zip(receiver.bodies, receiver.headers_seen, strict=True)
    )


def test_failed_webhook_is_retried_next_run_without_blocking(
    engine: Engine, sim_factory: Any, receiver_factory: Any
) -> None:
    spec = one_job(total_steps=10)
    sim = sim_factory([spec])
    receiver = receiver_factory(fail_first=1)
    plan = SnapshotPlan(details=(), notify=[Target("webhook", receiver.url)])
    sim.clock.set(spec.created_at + 10)
    run(engine, sim, plan)
    sim.clock.set(spec.created_at + 100)
    failed = run(engine, sim, plan)
    assert failed.exit_code == 0 and failed.result.status_changes  # recorded all the same
    assert len(failed.warnings) == 1 and "retried next run" in failed.warnings[0]
    assert receiver.url not in failed.warnings[0]  # the URL is a secret
    assert receiver.bodies == []
    retried = run(engine, sim, plan)  # no new transition: only the retry
    assert retried.notifications_sent == 1 and retried.warnings == []
    assert [(b["from_status"], b["to_status"]) for b in receiver.bodies] == EXPECTED[:1]
    with engine.connect() as conn:
        row = conn.execute(select(Notification)).one()
    assert row.attempts == 2 and row.delivered_at is not None
    assert receiver.url not in row.channel


def test_command_gets_the_transition_in_its_environment_but_not_the_token(
    engine: Engine, sim_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTLOG_API_KEY", TOKEN)
    monkeypatch.setenv("NEBIUS_API_KEY", TOKEN)
    out = tmp_path / "notes.txt"
    command = (
        'printf "%s|%s|%s|%s|%s\\n" "$FTLOG_JOB_ID" "$FTLOG_OLD_STATUS" "$FTLOG_NEW_STATUS" '
        f'"$FTLOG_MODEL" "${{FTLOG_API_KEY:-}}${{NEBIUS_API_KEY:-}}" >> {out}'
    )
    spec = one_job(total_steps=10, outcome="failed", stop_fraction=0.5)
    sim = sim_factory([spec])
    plan = SnapshotPlan(details=(), notify=[Target("command", command)])
    for offset in LIFE:
        sim.clock.set(spec.created_at + offset)
        run(engine, sim, plan)
    lines = out.read_text().splitlines()
    assert lines == [
        f"{spec.id}|{a}|{b}|{spec.model}|" for a, b in [*EXPECTED[:2], ("running", "failed")]
    ]


def test_failing_command_is_reported_and_retried(
    engine: Engine, sim_factory: Any, tmp_path: Path
) -> None:
    flag = tmp_path / "ok"
    command = f"test -e {flag} && echo sent >> {tmp_path / 'sent'} || (echo nope >&2; exit 3)"
    spec = one_job(total_steps=10)
    sim = sim_factory([spec])
    plan = SnapshotPlan(details=(), notify=[Target("command", command)])
    sim.clock.set(spec.created_at + 10)
    run(engine, sim, plan)
    sim.clock.set(spec.created_at + 100)
    failed = run(engine, sim, plan)
    assert failed.warnings and "exit code 3: nope" in failed.warnings[0]
    flag.touch()
    assert run(engine, sim, plan).notifications_sent == 1
    assert (tmp_path / "sent").read_text() == "sent\n"
