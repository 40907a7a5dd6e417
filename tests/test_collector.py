"""End-to-end: the collector against the simulated API on a real loopback socket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select, text

from ftlog import store
from ftlog.backoff import RetryPolicy
from ftlog.cli import main
from ftlog.collector import SnapshotPlan, ingest, snapshot
from ftlog.models import Hyperparameters, Job, RawPayload, Snapshot, StatusChangeRow
from ftlog.simulator import JobSpec, make_jobs
from tests.helpers import T0, TOKEN, Sim, count, one_job, run


def transitions(engine: Engine) -> list[tuple[str | None, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(StatusChangeRow.from_status, StatusChangeRow.to_status).order_by(
                StatusChangeRow.observed_at
            )
        )
        return [(r.from_status, r.to_status) for r in rows]


def test_lifecycle_is_recorded_as_snapshots_and_transitions(engine: Engine, sim_factory) -> None:
    spec = one_job(total_steps=10, tokens_per_step=1000, tokens_per_second=100.0)
    sim = sim_factory([spec])
    times = [T0 + 10, T0 + 30, T0 + 100, T0 + 200, T0 + 200, T0 + 230, T0 + 260, T0 + 400]
    for t in times:
        sim.clock.set(t)
        assert run(engine, sim).exit_code == 0
    assert transitions(engine) == [
        (None, "validating_files"),
        ("validating_files", "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    with engine.connect() as conn:
        snaps = conn.execute(
            select(Snapshot.status, Snapshot.trained_tokens, Snapshot.observations).order_by(
                Snapshot.first_observed_at
            )
        ).all()
    # validating x2, queued x1, running at t=200 (seen twice: 2 observations), 230, 260; done.
    assert [(s.status, s.trained_tokens, s.observations) for s in snaps] == [
        ("validating_files", None, 2),
        ("queued", None, 1),
        ("running", 2000, 2),
        ("running", 5000, 1),
        ("running", 8000, 1),
        ("succeeded", 10000, 1),
    ]
    with engine.connect() as conn:
        job = conn.execute(select(Job)).one()
        assert job.status == "succeeded" and job.trained_tokens == 10000
        assert job.finished_at is not None and job.finished_at.timestamp() == spec.finished_at
        hyper = conn.execute(select(Hyperparameters)).one()
        assert hyper.learning_rate == 1e-5 and hyper.lora is False and hyper.extra == {}


def test_identical_polls_add_no_rows(engine: Engine, sim_factory) -> None:
    sim = sim_factory([one_job()], now=T0 + 100_000)  # long finished
    polls = 1000
    with sim.client() as client:
        source_id = store.ensure_source(engine, "sim", sim.base_url)
        for _ in range(polls):
            snapshot(engine, client, source_id, SnapshotPlan(job_ids=["ftjob-life"], details=()))
    assert count(engine, Snapshot) == 1
    assert count(engine, RawPayload) == 1
    assert count(engine, StatusChangeRow) == 1
    with engine.connect() as conn:
        snap = conn.execute(select(Snapshot)).one()
        job = conn.execute(select(Job)).one()
    assert snap.observations == polls
    assert snap.last_observed_at > snap.first_observed_at
    assert job.last_seen_at == snap.last_observed_at


def test_incremental_sync_costs_one_request_when_up_to_date(engine: Engine, sim_factory) -> None:
    jobs = make_jobs(250, seed=3, start=T0, spacing=60)
    sim = sim_factory(jobs, now=T0 + 10_000_000)  # every job finished
    jobs_only = SnapshotPlan(details=())
    first = run(engine, sim, jobs_only)
    assert first.result.seen == 250 and first.exit_code == 0
    assert count(engine, Job) == 250
    before = sim.requests()
    second = run(engine, sim, jobs_only)
    assert sim.requests() - before == 1
    assert second.result.changed == 0 and second.result.snapshots_added == 0
    # A changed job among the newest is picked up by the same single request.
    newest = sim.api.job_ids[0]
    sim.api.touch([newest])
    before = sim.requests()
    third = run(engine, sim, jobs_only)
    assert sim.requests() - before == 1
    assert third.result.changed == 1


def test_unfinished_jobs_beyond_the_first_page_are_refetched(engine: Engine, sim_factory) -> None:
    old_running = JobSpec(id="ftjob-old", created_at=T0, tokens_per_second=0.01)  # for ages
    newer = make_jobs(150, seed=4, start=T0 + 1000, spacing=10)
    sim = sim_factory([old_running, *newer], now=T0 + 1_000_000)
    run(engine, sim, SnapshotPlan(details=()))
    before = sim.requests()
    sim.clock.advance(1000)
    result = run(engine, sim, SnapshotPlan(details=()))
    assert sim.requests() - before == 2  # the first list page, then the running job
    assert result.result.snapshots_added == 1  # the old job made progress


def test_interrupted_first_listing_is_completed_by_the_next_run(
    engine: Engine, sim_factory
) -> None:
    sim = sim_factory(make_jobs(250, seed=5, start=T0, spacing=60), faults="503:every=3")
    sim.clock.set(T0 + 10_000_000)
    broken = run(engine, sim, SnapshotPlan(details=()), retry=RetryPolicy(max_attempts=1))
    assert broken.exit_code == 1 and broken.fatal
    assert 0 < count(engine, Job) < 250
    sim.api.faults = ()
    assert run(engine, sim, SnapshotPlan(details=())).exit_code == 0
    assert count(engine, Job) == 250


@pytest.mark.parametrize(
    ("faults", "expect_errors"),
    [
        ("429:first=2:0", 0),
        ("500:every=2", 0),
        ("502:first=1,503:every=3", 0),
        ("reset:first=2", 0),
        ("slow:first=1:1.0", 0),
        ("malformed:first=1", 1),
        ("missing:first=1", 1),
    ],
)
def test_faults_are_survived_and_nothing_is_lost(
    engine: Engine, sim_factory, faults: str, expect_errors: int
) -> None:
    jobs = make_jobs(30, seed=6, start=T0, spacing=60)
    sim = sim_factory(jobs, faults=faults, now=T0 + 10_000_000)
    # One request at a time: a fault on every Nth request strikes a known request.
    plan = SnapshotPlan(job_ids=[j.id for j in jobs], concurrency=1)
    summary = run(engine, sim, plan, timeout=0.5)
    assert len(summary.errors) == expect_errors, summary.errors
    assert summary.exit_code == (1 if expect_errors else 0)
    sim.api.faults = ()
    run(engine, sim, SnapshotPlan(job_ids=[j.id for j in jobs]))
    assert count(engine, Job) == 30
    assert count(engine, Snapshot) == 30
    assert count(engine, StatusChangeRow) == 30


def test_foreign_provider_payloads_and_unknown_statuses(engine: Engine, tmp_path: Path) -> None:
    openai_job = {
        "id": "ftjob-openai",
        "object": "fine_tuning.job",
        "created_at": T0,
        "status": "paused",
        "model": "gpt-4o-mini-2024-07-18",
        "fine_tuned_model": None,
        "hyperparameters": {"n_epochs": "auto", "batch_size": "auto"},
        "method": {
            "type": "supervised",
            "supervised": {
                "hyperparameters": {
                    "n_epochs": 3,
                    "batch_size": "auto",
                    "learning_rate_multiplier": 1.8,
                }
            },
        },
        "metadata": {"team": "search"},
        "user_provided_suffix": "exp1",
        "integrations": [{"type": "mlflow", "mlflow": {"experiment": "x"}}, {"type": "hf"}],
        "brand_new_field": {"nested": [1, 2]},
    }
    nebius_spec = {
        "id": "ftjob-nebius",
        "created_at": T0,
        "status": "running",
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "method": {"type": "spec-draft"},
        "from_checkpoint": "ftckpt-1",
        "hyperparameters": {"lora": True, "lora_r": 16, "learning_rate": 2e-5},
    }
    path = tmp_path / "jobs.jsonl"
    path.write_text(json.dumps(openai_job) + "\n" + json.dumps(nebius_spec) + "\n")
    source_id = store.ensure_source(engine, "files", "https://example.invalid/v1")
    from ftlog.collector import read_job_objects

    summary = ingest(engine, source_id, read_job_objects(path.read_text(), str(path)))
    assert summary.exit_code == 0 and summary.result.seen == 2
    with engine.connect() as conn:
        jobs = {j.job_id: j for j in conn.execute(select(Job))}
        hyper = {h.job_pk: h for h in conn.execute(select(Hyperparameters))}
    paused = jobs["ftjob-openai"]
    assert paused.status == "paused" and paused.suffix == "exp1"
    assert paused.method_type == "supervised" and paused.metadata == {"team": "search"}
    openai_hyper = hyper[paused.id]
    assert openai_hyper.n_epochs == 3 and openai_hyper.batch_size is None
    assert openai_hyper.extra == {"batch_size": "auto", "learning_rate_multiplier": 1.8}
    nebius = hyper[jobs["ftjob-nebius"].id]
    assert nebius.lora is True and nebius.lora_r == 16 and nebius.learning_rate == 2e-5
    assert jobs["ftjob-nebius"].method_type == "spec-draft"


def test_ingest_reports_malformed_objects_and_keeps_the_rest(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    good = {"id": "ftjob-ok", "created_at": T0, "status": "queued", "model": "m"}
    bad = [
        {"id": "ftjob-nostatus", "created_at": T0},
        {"id": "ftjob-badtokens", "created_at": T0, "status": "running", "trained_tokens": "many"},
        {"status": "running", "created_at": T0},
        "not an object",
    ]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([good, *bad]))
    result = CliRunner().invoke(main, ["ingest", str(path), "--db", db_url])
    assert result.exit_code == 1
    assert "error: job ftjob-nostatus: 'status' is missing" in result.output
    # An optional value of the wrong type costs the job nothing: NULL, and a warning.
    assert "warning: job ftjob-badtokens: 'trained_tokens' should be a whole number" in (
        result.output
    )
    assert "2 jobs seen" in result.output
    assert count(engine, Job) == 2
    not_json = tmp_path / "broken.json"
    not_json.write_text('{"id": "x"\n{oops')
    broken = CliRunner().invoke(main, ["ingest", str(not_json), "--db", db_url])
    assert broken.exit_code == 2 and "line 1 is not JSON" in broken.output
    assert "Traceback" not in broken.output
    assert count(engine, Job) == 2


def test_ingest_backfill_at_given_time(engine: Engine, db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"id": "ftjob-b", "created_at": T0, "status": "queued"}))
    result = CliRunner().invoke(
        main, ["ingest", str(path), "--observed-at", "2026-01-02T03:04:05", "--db", db_url]
    )
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        seen = conn.execute(select(Job.first_seen_at)).scalar_one()
    assert seen.isoformat() == "2026-01-02T03:04:05+00:00"


# --- the CLI as cron runs it: processes, exit codes, secrets -----------------------------


def ftlog(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ftlog", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "FTLOG_API_KEY": TOKEN, **(env or {})},
        **kwargs,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def all_text(engine: Engine) -> str:
    """Every table's rows as text, to look for what must not be stored."""
    from ftlog.models import Base

    with engine.connect() as conn:
        return "\n".join(
            repr(row)
            for table in Base.metadata.sorted_tables
            for row in conn.execute(table.select())
        )


def test_exit_codes_and_the_token_stays_secret(engine: Engine, db_url: str, sim_factory) -> None:
    jobs = make_jobs(5, seed=7, start=T0, spacing=60)
    sim = sim_factory(jobs, faults="429:first=1:0", now=T0 + 10_000_000)
    base = ["--base-url", sim.base_url, "--db", db_url]
    code, out, err = finish(ftlog("snapshot", "-v", "--json", *base))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["jobs_seen"] == 5 and summary["outcome"] == "ok"
    assert "DEBUG" in err and TOKEN not in out + err
    code, _, err = finish(ftlog("snapshot", "-v", jobs[0].id, "ftjob-missing", *base))
    assert code == 1 and "ftjob-missing" in err and TOKEN not in err
    code, _, err = finish(ftlog("snapshot", "-vv", *base, env={"FTLOG_API_KEY": TOKEN + "x"}))
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("Error: the API refused the token")
    assert TOKEN not in err and "Traceback" not in err
    code, _, err = finish(ftlog("snapshot", *base, env={"FTLOG_API_KEY": ""}))
    assert code == 2 and "FTLOG_API_KEY" in err
    assert TOKEN not in all_text(engine)
    assert count(engine, Job) == 5


def test_quiet_run_prints_nothing_and_cron_line_otherwise(db_url: str, sim_factory) -> None:
    sim = sim_factory(make_jobs(3, seed=8, start=T0), now=T0 + 10_000_000)
    base = ["--base-url", sim.base_url, "--db", db_url]
    code, out, err = finish(ftlog("snapshot", "-q", *base))
    assert (code, out, err) == (0, "", "")
    code, out, err = finish(ftlog("snapshot", *base))
    assert code == 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and "3 jobs seen, 0 changed" in err


def test_two_collectors_at_once_record_each_change_once(
    engine: Engine, db_url: str, sim_factory
) -> None:
    jobs = make_jobs(300, seed=9, start=T0, spacing=30)
    sim = sim_factory(jobs, faults="slow:0.3:0.01", now=T0 + 5_000)  # many still running
    base = list_only_args(sim, db_url)
    for _ in range(3):
        sim.clock.advance(600)
        procs = [ftlog("snapshot", "--full", *base) for _ in range(2)]
        results = [finish(p) for p in procs]
        assert [code for code, _, _ in results] == [0, 0], results
    assert count(engine, Job) == len([j for j in jobs if j.created_at <= sim.clock.now()])
    with engine.connect() as conn:
        duplicated = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT job_pk, from_status, to_status FROM status_history "
                "GROUP BY job_pk, from_status, to_status HAVING count(*) > 1) d"
            )
        ).scalar_one()
        first_sightings = conn.execute(
            select(func.count()).where(StatusChangeRow.from_status.is_(None))
        ).scalar_one()
        broken_chains = conn.execute(
            text(
                "SELECT count(*) FROM jobs j WHERE j.status <> (SELECT s.status FROM snapshots s "
                "WHERE s.job_pk = j.id ORDER BY s.first_observed_at DESC LIMIT 1)"
            )
        ).scalar_one()
    assert duplicated == 0
    assert first_sightings == count(engine, Job)
    assert broken_chains == 0
    assert_consistent(engine)


def list_only_args(sim: Sim, db_url: str) -> list[str]:
    """Options for `ftlog snapshot` recording only the job list from ``sim`` into ``db_url``."""
    return [
        "--base-url",
        sim.base_url,
        "--db",
        db_url,
        "--source",
        "sim",
        "--no-events",
        "--no-checkpoints",
    ]


def assert_consistent(engine: Engine) -> None:
    """Every job has its first sighting, a snapshot and a payload; its history is a chain."""
    with engine.connect() as conn:
        orphans = conn.execute(
            text(
                "SELECT count(*) FROM jobs j WHERE NOT EXISTS (SELECT 1 FROM snapshots s WHERE "
                "s.job_pk = j.id) OR NOT EXISTS (SELECT 1 FROM raw_payloads p WHERE p.job_pk = "
                "j.id) OR NOT EXISTS (SELECT 1 FROM status_history h WHERE h.job_pk = j.id AND "
                "h.from_status IS NULL) OR j.payload_sha256 = ''"
            )
        ).scalar_one()
        rows = conn.execute(
            select(
                StatusChangeRow.job_pk, StatusChangeRow.from_status, StatusChangeRow.to_status
            ).order_by(StatusChangeRow.job_pk, StatusChangeRow.observed_at)
        ).all()
    assert orphans == 0
    previous: dict[int, str] = {}
    for job_pk, from_status, to_status in rows:
        assert from_status == previous.get(job_pk)
        previous[job_pk] = to_status


def test_collector_killed_mid_run_leaves_a_consistent_store(
    engine: Engine, db_url: str, sim_factory
) -> None:
    jobs = make_jobs(400, seed=10, start=T0, spacing=30)
    sim = sim_factory(jobs, faults="slow:0.5:0.05", now=T0 + 10_000_000)
    base = list_only_args(sim, db_url)
    proc = ftlog("snapshot", "--full", *base)
    deadline = time.monotonic() + 60
    while count(engine, Job) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = count(engine, Job)
    assert 0 < killed_at < 400
    assert_consistent(engine)
    code, _, err = finish(ftlog("snapshot", *base))
    assert code == 0, err
    assert count(engine, Job) == 400
    assert_consistent(engine)
    with engine.connect() as conn:
        outcomes = sorted(conn.execute(text("SELECT outcome FROM collector_runs")).scalars())
    assert outcomes == ["ok", "running"]  # the killed run could not say more


def test_watch_polls_until_the_watched_jobs_finish(engine: Engine, sim_factory) -> None:
    from ftlog.collector import watch

    spec = one_job(total_steps=10, tokens_per_step=1000, tokens_per_second=100.0)
    other = JobSpec(id="ftjob-forever", created_at=T0, tokens_per_second=0.001)
    sim = sim_factory([spec, other], now=T0 + 1)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the simulated job moves on while watch waits
        sleeps.append(seconds)
        sim.clock.advance(50)

    with sim.client() as client:
        source_id = store.ensure_source(engine, "sim", sim.base_url)
        passes = list(
            watch(
                engine,
                client,
                source_id,
                SnapshotPlan(job_ids=[spec.id], details=()),
                5.0,
                sleep=sleep,
            )
        )
    assert passes[-1].result.status_changes[-1].to_status == "succeeded"
    assert len(passes) == len(sleeps) + 1 and all(0 < s <= 5.0 for s in sleeps)
    assert transitions(engine)[-1] == ("running", "succeeded")
    with engine.connect() as conn:
        watched = conn.execute(select(Job.job_id)).scalars().all()
    assert watched == [spec.id]  # the other job was not asked about


def test_watch_stops_cleanly_on_ctrl_c(db_url: str, sim_factory) -> None:
    sim = sim_factory(
        [JobSpec(id="ftjob-slow", created_at=T0, tokens_per_second=0.001)], now=T0 + 1000
    )
    proc = ftlog(
        "watch",
        "--interval",
        "0.2",
        "--no-events",
        "--no-checkpoints",
        "--base-url",
        sim.base_url,
        "--db",
        db_url,
    )
    deadline = time.monotonic() + 30
    while sim.requests() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)
    assert code == 130, err
    assert "ftlog watch: interrupted by SIGINT" in err and "Traceback" not in err


def test_a_store_locked_too_long_stops_the_run_with_exit_75(
    tmp_path: Path, sim_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    db = tmp_path / "locked.db"
    assert CliRunner().invoke(main, ["db", "upgrade", "--db", str(db)]).exit_code == 0
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer that does not let go
    monkeypatch.setattr("ftlog.db.SQLITE_BUSY_TIMEOUT_MS", 200)
    sim = sim_factory([one_job()], now=T0 + 100_000)
    try:
        result = CliRunner().invoke(
            main, ["snapshot", "--base-url", sim.base_url, "--api-key", TOKEN, "--db", str(db)]
        )
    finally:
        holder.rollback()
        holder.close()
    assert result.exit_code == 75, result.output
    assert "another ftlog run" in result.output


def test_watch_without_job_ids_sees_jobs_created_while_it_runs(engine: Engine, sim_factory) -> None:
    from ftlog.collector import watch

    early = one_job(id="ftjob-early", total_steps=10)
    late = JobSpec(id="ftjob-late", created_at=T0 + 150, total_steps=10)
    sim = sim_factory([early, late], now=T0 + 1)

    with sim.client() as client:
        source_id = store.ensure_source(engine, "sim", sim.base_url)
        passes = watch(
            engine,
            client,
            source_id,
            SnapshotPlan(details=()),
            1.0,
            sleep=lambda _: sim.clock.advance(100),
        )
        list(passes)
    with engine.connect() as conn:
        statuses = {row.job_id: row.status for row in conn.execute(select(Job.job_id, Job.status))}
    assert statuses == {"ftjob-early": "succeeded", "ftjob-late": "succeeded"}


def test_a_large_first_sync_refreshes_postgres_statistics(
    engine: Engine, sim_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without statistics Postgres takes the new jobs table for empty and scans it per page."""
    monkeypatch.setattr("ftlog.collector.ANALYZE_AFTER_NEW_JOBS", 100)
    sim = sim_factory(make_jobs(250, seed=11, start=T0, spacing=60), now=T0 + 10_000_000)
    run(engine, sim, SnapshotPlan(details=()))
    if engine.dialect.name != "postgresql":
        return  # SQLite's planner needs no statistics; the run above must still succeed
    with engine.connect() as conn:
        estimated = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = 'jobs'::regclass")
        ).scalar_one()
    assert estimated >= 200
