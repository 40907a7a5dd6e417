"""Events and checkpoints: recorded once each, fetched incrementally, over a real socket."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, select

from ftlog import details
from ftlog.collector import SnapshotPlan
from ftlog.details import MISSING_AFTER
from ftlog.models import Checkpoint, Event, Job
from ftlog.simulator import JobSpec, SimulatedAPI, job_checkpoints, job_events
from ftlog.simulator.api import Response
from tests.helpers import T0, count, one_job, run


def visible(items: list[dict[str, Any]], now: float) -> set[str]:
    return {item["id"] for item in items if item["created_at"] <= now}


def detail_requests(sim: Any) -> dict[str, int]:
    by_path = sim.api.stats_snapshot()["by_path"]
    return {
        kind: sum(n for path, n in by_path.items() if path.endswith(kind))
        for kind in ("events", "checkpoints")
    }


def stored_ids(engine: Engine, model: Any, column: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(getattr(model, column))).scalars())


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 3, so that a first fetch needs the ``after`` cursor."""
    monkeypatch.setattr(details, "PAGE_SIZE", 3)


def test_details_are_fetched_incrementally_and_stored_once(
    engine: Engine, sim_factory: Any, small_pages: None
) -> None:
    spec = one_job(total_steps=100, tokens_per_step=1000, tokens_per_second=100.0)
    sim = sim_factory([spec])
    running_at = spec.started_at + 400  # 4 of 10 metrics events so far
    sim.clock.set(running_at)
    first_run = run(engine, sim)
    events_now = visible(job_events(spec), running_at)
    assert first_run.details_added["events"] == len(events_now)
    assert sorted(stored_ids(engine, Event, "event_id")) == sorted(events_now)
    first = detail_requests(sim)
    assert first["events"] == len(events_now) // 3 + 1  # paged back with the after cursor

    run(engine, sim)  # nothing changed, but a running job is asked again: one page each
    again = detail_requests(sim)
    assert again == {kind: requests + 1 for kind, requests in first.items()}

    later = spec.started_at + 500
    sim.clock.set(later)
    later_run = run(engine, sim)
    new_events = visible(job_events(spec), later) - events_now
    assert later_run.details_added["events"] == len(new_events)
    assert 0 < len(new_events) < 3
    assert detail_requests(sim)["events"] == again["events"] + 1  # one page held them all
    assert sorted(stored_ids(engine, Event, "event_id")) == sorted(visible(job_events(spec), later))

    finished = spec.finished_at + 10
    sim.clock.set(finished)
    run(engine, sim)  # once more after it finishes...
    after_finish = detail_requests(sim)
    run(engine, sim)
    run(engine, sim)  # ...then never again
    assert detail_requests(sim) == after_finish
    assert sorted(stored_ids(engine, Checkpoint, "checkpoint_id")) == sorted(
        c["id"] for c in job_checkpoints(spec)
    )
    assert sorted(stored_ids(engine, Event, "event_id")) == sorted(
        e["id"] for e in job_events(spec)
    )


def test_checkpoint_metrics_are_typed(engine: Engine, sim_factory: Any) -> None:
    spec = one_job()
    sim = sim_factory([spec], now=spec.finished_at + 1)
    run(engine, sim)
    with engine.connect() as conn:
        rows = conn.execute(select(Checkpoint).order_by(Checkpoint.step_number)).all()
    expected = job_checkpoints(spec)
    assert [r.step_number for r in rows] == [c["step_number"] for c in expected]
    assert [r.train_loss for r in rows] == [c["metrics"]["train_loss"] for c in expected]
    assert rows[0].train_loss > rows[-1].train_loss
    assert (
        rows[-1].valid_mean_token_accuracy == expected[-1]["metrics"]["valid_mean_token_accuracy"]
    )


def test_overlapping_runs_store_each_item_once(engine: Engine, sim_factory: Any) -> None:
    jobs = [JobSpec(id=f"ftjob-{i}", created_at=T0 + i) for i in range(20)]
    sim = sim_factory(jobs, faults="slow:0.5:0.005", now=T0 + 100_000)
    threads = [threading.Thread(target=run, args=(engine, sim)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected_events = sum(len(job_events(j)) for j in jobs)
    assert count(engine, Event) == expected_events
    assert count(engine, Checkpoint) == sum(len(job_checkpoints(j)) for j in jobs)


def test_no_details_flags_fetch_nothing(engine: Engine, sim_factory: Any) -> None:
    sim = sim_factory([one_job()], now=T0 + 100_000)
    run(engine, sim, SnapshotPlan(details=("checkpoints",)))
    assert detail_requests(sim)["events"] == 0 and count(engine, Event) == 0
    assert count(engine, Checkpoint) > 0


class NoDetailsAPI(SimulatedAPI):
    """A provider without the events and checkpoints endpoints."""

    def handle(self, target: str, authorization: str | None) -> Response:
        if target.split("?", maxsplit=1)[0].endswith(("/events", "/checkpoints")):
            with self._lock:
                self.stats.requests += 1
                self.stats.by_path[target.split("?", maxsplit=1)[0].rsplit("/", 1)[1]] += 1
            return Response(404, b'{"error": {"message": "Not found"}}')
        return super().handle(target, authorization)


def test_missing_endpoint_is_asked_once_per_run(engine: Engine, sim_factory: Any) -> None:
    jobs = [JobSpec(id=f"ftjob-{i}", created_at=T0 + i) for i in range(5)]
    sim = sim_factory(jobs, now=T0 + 100_000)
    sim.api.__class__ = NoDetailsAPI
    summary = run(engine, sim)
    assert summary.exit_code == 0 and summary.errors == []
    assert any("no events endpoint" in w for w in summary.warnings)
    # A few jobs asked one at a time, not one request per worker or per job.
    asked = sim.api.stats.by_path
    assert asked["events"] == MISSING_AFTER and asked["checkpoints"] == MISSING_AFTER
    with engine.connect() as conn:
        markers = conn.execute(select(Job.events_synced_sha256)).scalars().all()
    assert markers == [None] * 5  # asked again by a later run, which may find the endpoint
