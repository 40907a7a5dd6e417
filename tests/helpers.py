"""Helpers shared by the end-to-end tests: the simulated API on a real socket."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from click.testing import Result
from sqlalchemy import Engine, func, select

from ftlog import store
from ftlog.backoff import RetryPolicy
from ftlog.client import FineTuningClient
from ftlog.collector import RunSummary, SnapshotPlan, snapshot
from ftlog.models import Job
from ftlog.parse import parse_checkpoint, parse_event
from ftlog.simulator import JobSpec, ManualClock, SimulatedAPI

TOKEN = "sk-test-7f3a9c0e-secret"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


@dataclass
class Sim:
    api: SimulatedAPI
    clock: ManualClock
    base_url: str

    def client(self, **kwargs: Any) -> FineTuningClient:
        kwargs.setdefault("retry", RetryPolicy(base_delay=0.01, max_delay=0.05))
        return FineTuningClient(self.base_url, TOKEN, **kwargs)

    def requests(self) -> int:
        return int(self.api.stats_snapshot()["requests"])


def one_job(**kwargs: Any) -> JobSpec:
    return JobSpec(id=kwargs.pop("id", "ftjob-life"), created_at=T0, **kwargs)


def run(
    engine: Engine, sim: Sim, plan: SnapshotPlan | None = None, **client_kwargs: Any
) -> RunSummary:
    with sim.client(**client_kwargs) as client:
        source_id = store.ensure_source(engine, "sim", sim.base_url)
        return snapshot(engine, client, source_id, plan or SnapshotPlan())


def save_details(
    engine: Engine, job_id: str, events: list[dict[str, Any]], ckpts: list[dict[str, Any]]
) -> None:
    """Store raw events and checkpoints of a recorded job through the collector's own parse
    and save (the job id must be unique in the store)."""
    with engine.connect() as conn:
        pk, sha = conn.execute(select(Job.id, Job.payload_sha256).where(Job.job_id == job_id)).one()
    target = store.DetailTarget(pk, job_id, sha, None)
    events_found = [parse_event(e, job_id) for e in events]
    ckpts_found = [parse_checkpoint(c, job_id) for c in ckpts]
    store.save_details(engine, "events", [store.FetchedDetails(target, events_found)])
    store.save_details(engine, "checkpoints", [store.FetchedDetails(target, ckpts_found)])


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def store_rows(
    engine: Engine, *, times: bool = False, source: str | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows as sorted tuples, comparable across SQLite and Postgres and across
    runs: surrogate keys are replaced by the job id they stand for, and the times ftlog
    stamps itself (observations, bookkeeping) are left out unless ``times``; ``source``
    keeps the rows of that source's jobs only."""
    from ftlog.models import Base

    own_times = {
        "first_seen_at",
        "last_seen_at",
        "first_observed_at",
        "last_observed_at",
        "observed_at",
        "previous_observed_at",
        "started_at",
        "finished_at",
        "created_at",
        "claimed_until",
        "delivered_at",
        "listed_at",
    }
    api_times = {
        "jobs": {"created_at", "finished_at"},
        "events": {"created_at"},
        "checkpoints": {"created_at"},
    }
    skipped = {"id", "source_id", "job_pk", "status_change_id", "requests", "error_details"}
    tables = {t.name: t for t in Base.metadata.sorted_tables}
    with engine.connect() as conn:
        jobs = tables["jobs"].c
        job_ids: dict[int, str] = {
            r.id: r.job_id for r in conn.execute(select(jobs.id, jobs.job_id))
        }
        rows: dict[str, list[tuple[Any, ...]]] = {}
        for name, table in tables.items():
            if name in ("alembic_version", "collector_runs", "sources"):
                continue
            keep = [
                c.name
                for c in table.columns
                if c.name not in skipped
                and (times or c.name not in own_times or c.name in api_times.get(name, ()))
            ]
            found = []
            for row in conn.execute(table.select()):
                values = tuple(getattr(row, c) for c in keep)
                if "job_pk" in table.c:
                    if row.job_pk not in job_ids:
                        continue
                    values = (job_ids[row.job_pk], *values)
                elif name == "jobs" and row.id not in job_ids:
                    continue
                found.append(values)
            rows[name] = sorted(found, key=repr)
    return rows


def one_line_error(result: Result, *fragments: str) -> str:
    """The one ``Error:`` line of a command that failed with exit code 2, holding each of
    ``fragments``; no traceback, nothing else."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
