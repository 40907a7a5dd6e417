"""Analysis: ``throughput_summary`` over 1,000 jobs x 1,000 snapshots (1M rows), from SQLite
and from Postgres, against ``pandas.read_sql`` of the same snapshot rows.

The store is generated straight into the real schema (``ensure_schema``, then SQLAlchemy
Core bulk inserts; Postgres takes the snapshots by ``COPY``). Each job is polled once a
minute: validating, queued, 997 running snapshots with growing token counts, succeeded; four
status changes. The SQLite file is cached in ``benchmarks/results/`` (keyed by size and
schema revision); the Postgres copy lives in a schema made for the run and dropped after.

Times are taken in this process, alternating floor and ``throughput_summary`` on one engine.
Peak memory is taken in child processes (one per function): the growth of the peak RSS over
the RSS before the call, against the floor DataFrame's own ``memory_usage(deep=True)``.
"""

from __future__ import annotations

import json
import math
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from benchmarks.harness import (
    ROOT,
    Figure,
    Sample,
    Settings,
    alternate,
    log,
    postgres_schema,
    run_child,
)
from benchmarks.peak import peak_kb
from ftlog.db import create_store_engine, ensure_schema, head_revision
from ftlog.models import Job, Snapshot, Source, StatusChangeRow, table

TARGET = 1.5
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SNAPSHOT_COLUMNS = (
    "job_pk",
    "status",
    "trained_tokens",
    "trained_steps",
    "total_steps",
    "estimated_finish",
    "first_observed_at",
    "last_observed_at",
    "observations",
)
FLOOR_SQL = (
    "SELECT job_pk, status, trained_tokens, trained_steps, estimated_finish, first_observed_at "
    "FROM snapshots"
)
"""The snapshot columns throughput_summary reads, every row."""

_jobs = table(Job)
_snapshots = table(Snapshot)
_sources = table(Source)
_history = table(StatusChangeRow)


# --- the data ---------------------------------------------------------------------------------


def job_row(index: int, per_job: int) -> dict[str, Any]:
    rng = random.Random(index)
    created = T0 + timedelta(minutes=index * 10)
    per_step = rng.choice((16_384, 32_768, 65_536))
    tokens = _tokens_at(index, per_job - 1)
    return {
        "id": index + 1,
        "source_id": 1,
        "job_id": f"ftjob-bench-{index:06d}",
        "object": "fine_tuning.job",
        "model": rng.choice(("meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-7B-Instruct")),
        "status": "succeeded",
        "created_at": created,
        "finished_at": created + timedelta(minutes=per_job - 1, seconds=-20),
        "training_file": f"file-{index:016x}",
        "suffix": "bench",
        "seed": index,
        "trained_tokens": tokens,
        "trained_steps": tokens // per_step,
        "total_steps": tokens // per_step,
        "result_files": [f"file-result-{index}"],
        "integrations": [],
        "first_seen_at": created,
        "last_seen_at": created + timedelta(minutes=per_job - 1),
        "payload_sha256": f"{index:064x}",
    }


def _tokens_at(index: int, minute: int) -> int:
    """Tokens trained by minute ``minute`` of a job (running from minute 2)."""
    rate = 40_000 + (index % 97) * 500  # tokens per minute
    return max(0, minute - 2) * rate


def snapshot_rows(index: int, per_job: int) -> Iterator[tuple[Any, ...]]:
    """One job's snapshots, in SNAPSHOT_COLUMNS order."""
    created = T0 + timedelta(minutes=index * 10)
    per_step = 32_768
    total = _tokens_at(index, per_job - 1)
    finish = created + timedelta(minutes=per_job - 1)
    for minute in range(per_job):
        at = created + timedelta(minutes=minute)
        if minute == 0:
            yield (index + 1, "validating_files", None, None, None, None, at, at, 1)
        elif minute == 1:
            yield (index + 1, "queued", None, None, None, None, at, at, 1)
        else:
            tokens = _tokens_at(index, minute)
            status = "succeeded" if minute == per_job - 1 else "running"
            estimate = None if status == "succeeded" else finish + timedelta(seconds=minute % 90)
            steps = tokens // per_step
            yield (index + 1, status, tokens, steps, total // per_step, estimate, at, at, 1)


def history_rows(index: int, per_job: int) -> list[dict[str, Any]]:
    created = T0 + timedelta(minutes=index * 10)
    steps = [
        (None, "validating_files", 0),
        ("validating_files", "queued", 1),
        ("queued", "running", 2),
        ("running", "succeeded", per_job - 1),
    ]
    return [
        {
            "job_pk": index + 1,
            "from_status": before,
            "to_status": after,
            "observed_at": created + timedelta(minutes=minute),
            "previous_observed_at": (
                None if before is None else created + timedelta(minutes=minute - 1)
            ),
        }
        for before, after, minute in steps
    ]


def fill(engine: Engine, jobs: int, per_job: int) -> None:
    """Write the generated history into an empty store at the head revision."""
    ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(
            _sources.insert().values(id=1, name="bench", base_url="http://bench/v1", created_at=T0)
        )
        conn.execute(_jobs.insert(), [job_row(i, per_job) for i in range(jobs)])
        conn.execute(_history.insert(), [r for i in range(jobs) for r in history_rows(i, per_job)])
        if engine.dialect.name == "postgresql":
            _copy_snapshots(conn, jobs, per_job)
        else:
            chunk = max(1, 50_000 // per_job)
            for first in range(0, jobs, chunk):
                rows = [
                    dict(zip(SNAPSHOT_COLUMNS, row, strict=True))
                    for i in range(first, min(jobs, first + chunk))
                    for row in snapshot_rows(i, per_job)
                ]
                conn.execute(_snapshots.insert(), rows)
        if engine.dialect.name == "postgresql":
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence('jobs', 'id'), :n)"), {"n": jobs}
            )
            conn.exec_driver_sql("ANALYZE")


def _copy_snapshots(conn: Any, jobs: int, per_job: int) -> None:
    raw = conn.connection.driver_connection
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY snapshots ({', '.join(SNAPSHOT_COLUMNS)}) FROM STDIN") as copy,
    ):
        for i in range(jobs):
            for row in snapshot_rows(i, per_job):
                copy.write_row(row)


def cached_sqlite(folder: Path, jobs: int, per_job: int) -> Path:
    """The generated SQLite store, made once per size and schema revision."""
    path = folder / f"analysis-{jobs}x{per_job}-{head_revision()}.db"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    started = time.monotonic()
    engine = create_store_engine(f"sqlite:///{partial}")
    try:
        fill(engine, jobs, per_job)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    partial.rename(path)
    log(f"analysis: generated {path.name} in {time.monotonic() - started:.1f} s")
    return path


@contextmanager
def store_url(settings: Settings, database: str, jobs: int, per_job: int) -> Iterator[str]:
    if database == "sqlite":
        yield f"sqlite:///{cached_sqlite(settings.results_dir, jobs, per_job)}"
        return
    assert settings.postgres_url is not None
    with postgres_schema(settings.postgres_url, "analysis") as url:
        started = time.monotonic()
        engine = create_store_engine(url)
        try:
            fill(engine, jobs, per_job)
        finally:
            engine.dispose()
        log(f"analysis: filled Postgres in {time.monotonic() - started:.1f} s")
        yield url


# --- the measurements -------------------------------------------------------------------------


def read_floor(engine: Engine) -> Any:
    import pandas as pd

    with engine.connect() as conn:
        return pd.read_sql(text(FLOOR_SQL), conn)


def summarise(engine: Engine) -> Any:
    from ftlog.analysis import throughput_summary

    return throughput_summary(engine)


def run(settings: Settings) -> list[Figure]:
    jobs, per_job = settings.pick((20, 50), (100, 100), (1000, 1000))
    repeats = settings.runs
    figures = []
    for database in settings.databases:
        with store_url(settings, database, jobs, per_job) as url:
            engine = create_store_engine(url)
            try:
                frame = summarise(engine)
                if len(frame) != jobs:
                    raise RuntimeError(f"throughput_summary gave {len(frame)} rows, not {jobs}")
                series = alternate(
                    {
                        "floor": partial(_timed, read_floor, engine),
                        "summary": partial(_timed, summarise, engine),
                    },
                    repeats,
                    warmup=False,
                )
            finally:
                engine.dispose()
            memory = {which: _memory(which, url) for which in ("floor", "summary")}
        floor, summary = series["floor"].wall, series["summary"].wall
        frame_mb = memory["floor"]["frame_mb"]
        log(f"analysis {database}: floor {floor:.2f} s, throughput_summary {summary:.2f} s")
        rows = f"{jobs:,} jobs x {per_job:,} snapshots"
        figures += [
            Figure(
                "4 analysis",
                f"throughput_summary, {rows}, {database}",
                summary,
                "s",
                floor,
                "pandas.read_sql",
                TARGET,
                f"≤ {TARGET}x",
            ),
            Figure(
                "4 analysis",
                f"peak memory over the snapshot frame ({frame_mb:.0f} MB), {database}",
                memory["summary"]["peak_mb"],
                "MB",
                memory["floor"]["peak_mb"],
                "pandas.read_sql",
                target_text="report",
                note=f"{memory['summary']['peak_mb'] / frame_mb:.1f}x the frame; "
                f"read_sql {memory['floor']['peak_mb'] / frame_mb:.1f}x",
            ),
        ]
    return figures


def _timed(function: Callable[[Engine], Any], engine: Engine) -> Sample:
    started = time.perf_counter()
    function(engine)
    return Sample(time.perf_counter() - started, math.nan, math.nan, "", "")


def _memory(which: str, url: str) -> dict[str, float]:
    env = {"PYTHONPATH": str(ROOT)}
    sample = run_child([sys.executable, "-m", "benchmarks.analysis", which, url], env=env)
    result: dict[str, float] = json.loads(sample.stdout.strip().splitlines()[-1])
    return result


def _current_rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 1024**2


def _reset_peak() -> None:
    """Bring the peak RSS (VmHWM) down to the current RSS (Linux 4.0+: clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def _child(which: str, url: str) -> None:
    """Run one function once; print its peak memory growth and the frame's size."""
    import pandas as pd

    import ftlog.analysis  # noqa: F401 - imported before the baseline is taken

    engine = create_store_engine(url)
    with engine.connect() as conn:  # connect (and load the driver) before the baseline
        conn.execute(text("SELECT 1"))
    _reset_peak()
    before = _current_rss_mb()
    frame: pd.DataFrame = (read_floor if which == "floor" else summarise)(engine)
    peak = (peak_kb() or 0) / 1024
    frame_mb = float(frame.memory_usage(deep=True).sum()) / 1024**2
    print(json.dumps({"peak_mb": peak - before, "frame_mb": frame_mb}))


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
