"""Requests several at a time, over a real loopback server: the API's back-off shared by
every worker, a slow or failing job costing no other, and the same rows as a sequential run."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, select

from ftlog import store
from ftlog.backoff import RetryPolicy
from ftlog.backoff import duration as _duration
from ftlog.client import FineTuningClient
from ftlog.collector import RunSummary, SnapshotPlan, snapshot
from ftlog.db import create_store_engine, ensure_schema
from ftlog.models import Job
from ftlog.simulator import make_jobs
from tests.helpers import T0, TOKEN, count, store_rows
from tests.hostile import HostileAPI, job, page, serve

LIST = "/fine_tuning/jobs"
RUNNING = [job(f"ftjob-{n:02d}", "running", created_at=T0 - n) for n in range(24)]


def refresh_all(engine: Engine, base_url: str, concurrency: int = 8) -> RunSummary:
    """Record the jobs once from the list, then refresh them one by one (--active)."""
    retry = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)
    with FineTuningClient(base_url, TOKEN, retry=retry) as client:
        source_id = store.ensure_source(engine, "c", base_url)
        plan = SnapshotPlan(details=(), concurrency=concurrency)
        snapshot(engine, client, source_id, plan)
        active = SnapshotPlan(active_only=True, details=(), concurrency=concurrency)
        return snapshot(engine, client, source_id, active)


class Timeline:
    """When each request arrived and each answer left, on the server's clock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[float, str, str]] = []

    def note(self, what: str, path: str) -> None:
        with self.lock:
            self.events.append((time.monotonic(), what, path))

    def first(self, what: str, path: str) -> float:
        return min(t for t, w, p in self.events if w == what and p == path)


def job_route(timeline: Timeline | None = None, answer: Any = None) -> Any:
    def route(path: str, query: dict[str, str]) -> Any:
        job_id = path.rsplit("/", 1)[1]
        if timeline is not None:
            timeline.note("asked", job_id)
        result = answer(job_id) if answer else (200, job(job_id, "succeeded"))
        if timeline is not None:
            timeline.note("answered", job_id)
        return result

    return route


def test_a_429_pauses_every_worker_together(engine: Engine) -> None:
    timeline = Timeline()
    refused: list[float] = []

    def answer(job_id: str) -> Any:
        if not refused:  # the first request about a job: the limit is reached
            refused.append(time.monotonic())
            return 429, {"error": {"message": "slow down"}}, {"Retry-After": "1"}
        return 200, job(job_id, "succeeded")

    api = HostileAPI({LIST: lambda *_: page(RUNNING, False), "*": job_route(timeline, answer)})
    with serve(api) as base:
        summary = refresh_all(engine, base)
    assert summary.exit_code == 0, summary.errors
    with engine.connect() as conn:
        assert set(conn.execute(select(Job.status)).scalars()) == {"succeeded"}
    # Each other worker may have had one request past the pause already; after that none was
    # sent until Retry-After had passed. (Without a shared pause, the other 7 workers would
    # have fetched the remaining 23 jobs during that second.)
    (at,) = refused
    arrivals = [t for t, what, _ in timeline.events if what == "asked"]
    assert len([t for t in arrivals if at + 0.05 < t < at + 0.95]) < 8
    assert len([t for t in arrivals if t >= at + 0.95]) >= len(RUNNING) - 8


def test_a_window_used_up_pauses_the_next_requests_until_it_resets(engine: Engine) -> None:
    timeline = Timeline()
    calls = {"n": 0}

    def answer(job_id: str) -> Any:
        calls["n"] += 1
        headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "800ms"}
        return 200, job(job_id, "succeeded"), headers if calls["n"] == 1 else {}

    api = HostileAPI({LIST: lambda *_: page(RUNNING[:3], False), "*": job_route(timeline, answer)})
    with serve(api) as base:
        summary = refresh_all(engine, base, concurrency=1)
    assert summary.exit_code == 0
    times = sorted(t for t, what, _ in timeline.events if what == "asked")
    assert times[1] - times[0] >= 0.75  # the window said none left for 800 ms


def test_a_slow_job_holds_up_no_other(engine: Engine) -> None:
    timeline = Timeline()
    api = HostileAPI(
        {LIST: lambda *_: page(RUNNING, False), "*": job_route(timeline)},
        delays={f"{LIST}/ftjob-00": 1.5},
    )
    with serve(api) as base:
        summary = refresh_all(engine, base)
    assert summary.exit_code == 0 and count(engine, Job) == len(RUNNING)
    slow_done = timeline.first("answered", "ftjob-00")
    others = [j["id"] for j in RUNNING if j["id"] != "ftjob-00"]
    assert all(timeline.first("answered", j) < slow_done for j in others)


def test_a_failing_job_among_good_ones_is_reported_alone(engine: Engine) -> None:
    def answer(job_id: str) -> Any:
        if job_id == "ftjob-05":
            return 500, {"error": {"message": "boom"}}
        return 200, job(job_id, "succeeded")

    api = HostileAPI({LIST: lambda *_: page(RUNNING, False), "*": job_route(answer=answer)})
    with serve(api) as base:
        summary = refresh_all(engine, base)
    assert summary.exit_code == 1
    (error,) = summary.errors
    assert "ftjob-05" in error and "HTTP 500" in error
    with engine.connect() as conn:
        statuses = {r.job_id: r.status for r in conn.execute(select(Job.job_id, Job.status))}
    assert statuses.pop("ftjob-05") == "running"
    assert set(statuses.values()) == {"succeeded"}


def test_an_api_failing_for_every_job_stops_the_phase_early(engine: Engine) -> None:
    api = HostileAPI(
        {LIST: lambda *_: page(RUNNING, False), "*": lambda *_: (503, {"error": "down"})}
    )
    with serve(api) as base:
        summary = refresh_all(engine, base, concurrency=2)
    assert summary.exit_code == 1
    assert any(
        "stopped refreshing jobs after 3 requests in a row failed" in e for e in summary.errors
    )
    assert len(summary.errors) < len(RUNNING)  # not every job waited out its retries


def test_a_concurrent_run_records_the_same_rows_as_a_sequential_one(
    tmp_path: Any, sim_factory: Any, postgres_url: str
) -> None:
    specs = make_jobs(40, seed=11, start=T0, spacing=120)
    sim = sim_factory(specs, now=T0 + 40 * 60)  # some finished, some running, some queued
    results = []
    for concurrency, url in ((1, f"sqlite:///{tmp_path / 'seq.db'}"), (8, postgres_url),
                             (8, f"sqlite:///{tmp_path / 'conc.db'}")):  # fmt: skip
        engine = create_store_engine(url)
        ensure_schema(engine)
        try:
            for advance in (0, 600, 1200):  # three runs, the jobs moving on between them
                sim.clock.set(T0 + 40 * 60 + advance)
                with sim.client() as client:
                    source_id = store.ensure_source(engine, "sim", sim.base_url)
                    plan = SnapshotPlan(concurrency=concurrency)
                    assert snapshot(engine, client, source_id, plan).exit_code == 0
            results.append(store_rows(engine))
        finally:
            engine.dispose()
    sequential, on_postgres, concurrent = results
    assert sequential["events"] and sequential["checkpoints"]
    assert concurrent == sequential
    assert on_postgres == sequential


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("2.5", 2.5)],
)
def test_rate_limit_reset_durations(text: str, seconds: float) -> None:
    assert _duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "1x", "s"])
def test_unreadable_reset_durations(text: str) -> None:
    assert _duration(text) is None
