"""Polling growth: what repeated ``ftlog snapshot`` runs add to the store.

Drives the collector (the library call behind ``ftlog snapshot``, default plan: job list,
unfinished jobs, events and checkpoints) against the simulator on a loopback socket, with a
manual clock:

- 1,000 polls of a finished job: no snapshot rows may be added;
- 1,000 polls of a running job whose state changes on every other poll (the clock moves a
  minute every second poll): exactly one snapshot row per distinct state;
- one poll a minute of ten copies of a typical job (the simulator's median-length job, about
  18 minutes from creation to success) over its life and ten minutes more: the bytes the store
  grew by, per job. The rest of the day's polls add no job rows (the first case shows it), so
  that is the job's growth per day; apart from it, the per-run bookkeeping
  (``collector_runs``, one row per run whatever the number of jobs), measured over the first
  case's polls and scaled to 1,440 runs.

SQLite bytes are pages (``dbstat``); Postgres bytes are ``pg_total_relation_size`` after
``VACUUM FULL`` (live rows and indexes, no dead tuples).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text

from benchmarks.harness import Figure, Settings, log, postgres_schema
from ftlog import store
from ftlog.client import FineTuningClient
from ftlog.collector import SnapshotPlan, snapshot
from ftlog.db import create_store_engine, ensure_schema
from ftlog.models import Base, CollectorRun, Snapshot, table
from ftlog.parse import parse_job
from ftlog.simulator import JobSpec, ManualClock, SimulatedAPI, make_jobs, render_job
from ftlog.simulator.server import serve_in_thread

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
COPIES = 10
DAY = 24 * 60
"""Runs in a day at one a minute."""
"""Typical jobs polled together in the day case (bytes are divided by it)."""
MINUTE = 60
RUN_TABLES = frozenset({table(CollectorRun).name, "sources"})


@contextmanager
def store_engine(settings: Settings, database: str, label: str) -> Iterator[Engine]:
    """A fresh store at the head revision."""
    with tempfile.TemporaryDirectory() as tmp:
        if database == "sqlite":
            engine = create_store_engine(f"sqlite:///{Path(tmp) / 'polling.db'}")
            ensure_schema(engine)
            try:
                yield engine
            finally:
                engine.dispose()
            return
        assert settings.postgres_url is not None
        with postgres_schema(settings.postgres_url, label) as url:
            engine = create_store_engine(url)
            ensure_schema(engine)
            try:
                yield engine
            finally:
                engine.dispose()


class Poller:
    """Runs the collector against a simulated API whose clock the caller moves."""

    def __init__(self, engine: Engine, base_url: str, clock: ManualClock) -> None:
        self.engine, self.clock = engine, clock
        self.client = FineTuningClient(base_url, "bench-token")
        self.source_id = store.ensure_source(engine, "sim", base_url)
        self.polls = 0

    def poll(self) -> None:
        summary = snapshot(self.engine, self.client, self.source_id, SnapshotPlan())
        if summary.errors:
            raise RuntimeError(f"poll failed: {summary.errors[:3]}")
        self.polls += 1


@contextmanager
def polling(engine: Engine, jobs: list[JobSpec], now: float) -> Iterator[Poller]:
    clock = ManualClock(now)
    with serve_in_thread(SimulatedAPI(jobs, clock=clock)) as url:
        poller = Poller(engine, url, clock)
        try:
            yield poller
        finally:
            poller.client.close()


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in Base.metadata.sorted_tables
        }


def added(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before.get(name, 0) for name in after}


def table_bytes(engine: Engine) -> dict[str, int]:
    """Bytes each table takes, its indexes included."""
    tables = {t.name for t in Base.metadata.sorted_tables}
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            master = conn.execute(text("SELECT name, tbl_name FROM sqlite_master"))
            owner = {str(name): str(table) for name, table in master}
            sizes: dict[str, int] = dict.fromkeys(tables, 0)
            for name, size in conn.execute(
                text("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
            ):
                table = owner.get(name, name)
                if table in sizes:
                    sizes[table] += int(size)
            return sizes
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"VACUUM FULL {', '.join(sorted(tables))}")  # this schema's only
        return {
            name: int(
                conn.execute(
                    text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": name}
                ).scalar_one()
            )
            for name in tables
        }


def state_key(spec: JobSpec, t: int) -> tuple[object, ...]:
    s = parse_job(render_job(spec, t)).state
    return (s.status, s.trained_tokens, s.trained_steps, s.total_steps, s.estimated_finish)


# --- the cases --------------------------------------------------------------------------------


def unchanged_job(engine: Engine, polls: int) -> tuple[dict[str, int], dict[str, int]]:
    """Rows and bytes added by ``polls`` polls of a finished job after its first sighting."""
    spec = JobSpec(id="ftjob-finished", created_at=T0)
    with polling(engine, [spec], spec.finished_at + MINUTE) as poller:
        poller.poll()
        before, bytes_before = row_counts(engine), table_bytes(engine)
        for _ in range(polls):
            poller.clock.advance(MINUTE)
            poller.poll()
    return added(before, row_counts(engine)), added(bytes_before, table_bytes(engine))


def running_job(engine: Engine, polls: int) -> tuple[dict[str, int], int, dict[str, int]]:
    """Rows added by ``polls`` polls of a running job, the distinct states those polls saw,
    and the bytes the job's tables grew by."""
    # 1,000 steps of 1,000 tokens at 10 tokens/s: running for 100,000 s, longer than the polls.
    spec = JobSpec(id="ftjob-running", created_at=T0, total_steps=1000, tokens_per_second=10.0)
    with polling(engine, [spec], spec.started_at + MINUTE) as poller:
        poller.poll()
        before, bytes_before = row_counts(engine), table_bytes(engine)
        previous, distinct = state_key(spec, int(poller.clock.now())), 0
        for i in range(polls):
            if i % 2 == 0:
                poller.clock.advance(MINUTE)
            state = state_key(spec, int(poller.clock.now()))
            distinct += state != previous
            previous = state
            poller.poll()
        if spec.status_at(int(poller.clock.now())) != "running":
            raise RuntimeError("the running job finished during the polls; make it longer")
    grew = added(bytes_before, table_bytes(engine))
    return added(before, row_counts(engine)), distinct, grew


def typical_day(engine: Engine, copies: int) -> tuple[dict[str, int], JobSpec, int]:
    """Bytes per table that one-minute polls of ``copies`` typical jobs add over the jobs'
    life (and ten polls more); the typical job, and the number of polls."""
    jobs = make_jobs(1000, seed=0, start=T0)
    by_length = sorted(jobs, key=lambda j: j.finished_at - j.created_at)
    typical = by_length[len(by_length) // 2]
    specs = [replace(typical, id=f"{typical.id}-{n}", created_at=T0 + n * 7) for n in range(copies)]
    end = max(s.finished_at for s in specs) + 10 * MINUTE
    with polling(engine, specs, T0 - MINUTE) as poller:
        before = table_bytes(engine)
        while poller.clock.now() <= end:
            poller.poll()
            poller.clock.advance(MINUTE)
    return added(before, table_bytes(engine)), typical, poller.polls


CASES = ("unchanged", "running", "day")


def _case(case: str, database: str, settings: Settings) -> Any:
    """One case on one database, in a store of its own (run in a worker process)."""
    polls = settings.pick(10, 100, 1000)
    with store_engine(settings, database, f"poll_{case}") as engine:
        if case == "unchanged":
            return unchanged_job(engine, polls)
        if case == "running":
            return running_job(engine, polls)
        return typical_day(engine, COPIES)


def run(settings: Settings) -> list[Figure]:
    """The cases run side by side in worker processes: they count rows and bytes, not time."""
    polls = settings.pick(10, 100, 1000)
    started = time.monotonic()
    tasks = [(case, database) for database in settings.databases for case in CASES]
    workers = min(len(tasks), max(2, (os.cpu_count() or 2) + 1))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {task: pool.submit(_case, *task, settings) for task in tasks}
        results = {task: future.result() for task, future in futures.items()}
    log(f"polling: {time.monotonic() - started:.1f} s")
    figures: list[Figure] = []
    for database in settings.databases:
        rows, run_growth = results["unchanged", database]
        run_bytes = sum(v for k, v in run_growth.items() if k in RUN_TABLES) * DAY / polls
        figures.append(
            Figure(
                "3 polling growth",
                f"{polls:,} polls of an unchanged job, {database}",
                rows[table(Snapshot).name],
                "rows",
                target_text="0 snapshot rows",
                note="rows added elsewhere: " + _nonzero(rows, skip={table(Snapshot).name}),
                met_override=rows[table(Snapshot).name] == 0,
            )
        )
        rows, distinct, grew = results["running", database]
        snapshots = rows[table(Snapshot).name]
        per_state = sum(v for k, v in grew.items() if k not in RUN_TABLES) / max(1, distinct)
        figures.append(
            Figure(
                "3 polling growth",
                f"{polls:,} polls of a running job, {distinct} distinct states, {database}",
                snapshots,
                "rows",
                target_text=f"{distinct} rows (1 per state)",
                note=f"{per_state / 1024:.1f} KiB per state, all tables",
                met_override=snapshots == distinct,
            )
        )
        grew, typical, day = results["day", database]
        job_bytes = sum(v for k, v in grew.items() if k not in RUN_TABLES) / COPIES
        minutes = (typical.finished_at - typical.created_at) / 60
        by_table = {k: round(v / COPIES) for k, v in grew.items() if k not in RUN_TABLES}
        figures.append(
            Figure(
                "3 polling growth",
                f"bytes per typical job per day, 1 poll/min, {database}",
                job_bytes,
                "bytes",
                target_text="report",
                note=f"a {minutes:.0f}-minute job, polled over its life ({day} polls; later polls "
                f"add no job rows); by table: {_nonzero(by_table)}; plus "
                f"{run_bytes / 1024:.0f} KiB/day of collector_runs at {DAY:,} runs (from the "
                "unchanged case), any number of jobs",
            )
        )
    return figures


def _nonzero(values: dict[str, int], skip: frozenset[str] | set[str] = frozenset()) -> str:
    parts = [f"{k} {v:,}" for k, v in sorted(values.items()) if v and k not in skip]
    return ", ".join(parts) or "none"
