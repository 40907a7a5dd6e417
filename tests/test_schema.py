"""The schema, its migration chain, and how commands treat a database at another revision."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import venv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Engine, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from ftlog import db as store_db
from ftlog.cli import main
from ftlog.models import (
    Base,
    Checkpoint,
    CollectorRun,
    Event,
    Job,
    Notification,
    RawPayload,
    Snapshot,
    Source,
    StatusChangeRow,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
ROOT = Path(__file__).resolve().parent.parent


def tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def test_upgrade_downgrade_upgrade(empty_engine: Engine) -> None:
    assert tables(empty_engine) == set()
    store_db.upgrade(empty_engine)
    assert set(Base.metadata.tables) | {"alembic_version"} == tables(empty_engine)
    store_db.downgrade(empty_engine, "base")
    assert tables(empty_engine) <= {"alembic_version"}
    store_db.upgrade(empty_engine)
    with empty_engine.connect() as conn:
        assert store_db.current_revision(conn) == store_db.head_revision()


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def _job(conn, source_name: str = "s") -> int:
    source = conn.execute(
        insert(Source)
        .values(name=source_name, base_url="http://x", created_at=T0)
        .returning(Source.id)
    ).scalar_one()
    return int(
        conn.execute(
            insert(Job)
            .values(
                source_id=source,
                job_id="ftjob-1",
                status="running",
                created_at=T0,
                first_seen_at=T0,
                last_seen_at=T0,
                payload_sha256="a" * 64,
            )
            .returning(Job.id)
        ).scalar_one()
    )


def test_duplicate_transition_is_rejected(engine: Engine) -> None:
    row = {
        "from_status": "queued",
        "to_status": "running",
        "observed_at": T0,
        "previous_observed_at": T0 - timedelta(minutes=1),
    }
    with engine.begin() as conn:
        job_pk = _job(conn)
        conn.execute(insert(StatusChangeRow).values(job_pk=job_pk, **row))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(StatusChangeRow).values(job_pk=job_pk, **row))
    # A racing collector that saw the same change a moment later is rejected too: a change
    # after a given observation can be recorded once.
    later = {**row, "observed_at": T0 + timedelta(seconds=5)}
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(StatusChangeRow).values(job_pk=job_pk, **later))


def test_a_second_first_sighting_is_rejected(engine: Engine) -> None:
    first = {"from_status": None, "to_status": "running", "previous_observed_at": None}
    with engine.begin() as conn:
        job_pk = _job(conn)
        conn.execute(insert(StatusChangeRow).values(job_pk=job_pk, observed_at=T0, **first))
    later = T0 + timedelta(minutes=1)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(StatusChangeRow).values(job_pk=job_pk, observed_at=later, **first))


@pytest.mark.parametrize(
    ("model", "values"),
    [
        (CollectorRun, {"command": "snapshot", "started_at": T0, "outcome": "fine"}),
        (StatusChangeRow, {"to_status": "x", "observed_at": T0, "previous_observed_at": T0 + H}),
        (
            Snapshot,
            {"status": "x", "first_observed_at": T0 + H, "last_observed_at": T0, "observations": 1},
        ),
        (
            Snapshot,
            {"status": "x", "first_observed_at": T0, "last_observed_at": T0, "observations": 0},
        ),
    ],
)
def test_check_constraints_refuse_what_ftlog_never_writes(
    engine: Engine, model: Any, values: dict[str, Any]
) -> None:
    with engine.begin() as conn:
        job_pk = _job(conn)
    if "job_pk" in model.__table__.c:
        values = {**values, "job_pk": job_pk}
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(model).values(**values))


def test_duplicate_raw_payload_is_rejected(engine: Engine) -> None:
    row = {"sha256": "b" * 64, "body": "{}", "first_observed_at": T0, "last_observed_at": T0}
    with engine.begin() as conn:
        job_pk = _job(conn)
        conn.execute(insert(RawPayload).values(job_pk=job_pk, **row))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(RawPayload).values(job_pk=job_pk, **row))


def test_times_come_back_in_utc(engine: Engine) -> None:
    from zoneinfo import ZoneInfo

    local = datetime(2026, 3, 1, 12, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
    with engine.begin() as conn:
        conn.execute(insert(Source).values(name="tz", base_url="x", created_at=local))
    with engine.connect() as conn:
        stored = conn.execute(Source.__table__.select()).one().created_at
    assert stored == local and stored.tzinfo is not None and stored.utcoffset() == timedelta(0)


def test_empty_database_gets_the_schema(empty_engine: Engine) -> None:
    store_db.ensure_schema(empty_engine)
    assert "jobs" in tables(empty_engine)


def test_the_quick_revision_check_agrees_with_alembic(tmp_path: Path) -> None:
    """ensure_schema's every-run check reads the scripts without alembic; it must find
    alembic's head, and answer None (leaving the decision to alembic) when unsure."""
    assert store_db.scripted_head() == store_db.head_revision()
    versions = tmp_path / "versions"
    versions.mkdir()
    for name in ("a", "b"):  # two heads
        (versions / f"{name}.py").write_text(f'revision = "{name}"\ndown_revision = None\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store_db, "migrations_dir", lambda: tmp_path)
        assert store_db.scripted_head() is None


def test_database_behind_the_code_asks_for_upgrade(engine: Engine, db_url: str) -> None:
    store_db.downgrade(engine, "-1")
    result = CliRunner().invoke(main, ["jobs", "--db", db_url])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "run: ftlog db upgrade" in lines[0]
    upgraded = CliRunner().invoke(main, ["db", "upgrade", "--db", db_url])
    assert upgraded.exit_code == 0, upgraded.output
    assert CliRunner().invoke(main, ["jobs", "--db", db_url]).exit_code == 0


def test_database_ahead_of_the_code_is_refused(engine: Engine, db_url: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    result = CliRunner().invoke(main, ["jobs", "--db", db_url])
    assert result.exit_code == 2
    assert "newer than this ftlog" in result.output and "upgrade ftlog" in result.output


def test_db_commands_report_head(empty_engine: Engine, db_url: str) -> None:
    with empty_engine.connect():
        pass  # an empty database (on SQLite, an empty file)
    runner = CliRunner()
    assert "no schema yet" in runner.invoke(main, ["db", "current", "--db", db_url]).output
    assert runner.invoke(main, ["db", "upgrade", "--db", db_url]).exit_code == 0
    head = store_db.head_revision()
    assert runner.invoke(main, ["db", "current", "--db", db_url]).output.strip() == f"{head} (head)"
    assert head in runner.invoke(main, ["db", "history"]).output


def test_downgrade_asks_first_and_keeps_data_when_refused(engine: Engine, db_url: str) -> None:
    result = CliRunner().invoke(main, ["db", "downgrade", "base", "--db", db_url], input="n\n")
    assert result.exit_code == 1
    assert "jobs" in tables(engine)
    result = CliRunner().invoke(main, ["db", "downgrade", "base", "--yes", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "jobs" not in tables(engine)


def test_plain_path_means_sqlite_file(tmp_path: Path) -> None:
    url = store_db.resolve_url(str(tmp_path / "store.db"))
    assert url == f"sqlite:///{tmp_path / 'store.db'}"


def test_default_store_is_under_the_user_data_directory(tmp_path: Path) -> None:
    url = store_db.resolve_url(None)
    assert url.startswith(f"sqlite:///{tmp_path / 'xdg-data'}") and url.endswith("ftlog.db")


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = store_db.create_store_engine(f"sqlite:///{tmp_path / 'p.db'}")
    store_db.ensure_schema(engine)  # WAL is set once the file is known to be an ftlog store
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert (
            conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == store_db.SQLITE_BUSY_TIMEOUT_MS
        )
    engine.dispose()


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with ftlog installed from its wheel (pip install ., not editable)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp.glob("ftlog-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[postgres]"],
        check=True,
    )
    return env_dir


@pytest.mark.slow
def test_installed_wheel_runs_migrations_from_elsewhere(
    tmp_path: Path, db_url: str, installed_wheel: Path
) -> None:
    """ftlog db upgrade, from another directory, with only what the wheel carries."""
    ftlog = str(installed_wheel / "bin" / "ftlog")
    upgrade = subprocess.run(
        [ftlog, "db", "upgrade", "--db", db_url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    current = subprocess.run(
        [ftlog, "db", "current", "--db", db_url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert current.stdout.strip() == f"{store_db.head_revision()} (head)"
    located = subprocess.run(
        [
            str(installed_wheel / "bin" / "python"),
            "-c",
            "import ftlog.db; print(ftlog.db.migrations_dir())",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert located.stdout.startswith(str(installed_wheel))


@pytest.mark.parametrize("kind", ["tables", "not-a-database"])
def test_a_foreign_sqlite_file_is_refused_and_left_byte_for_byte(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "theirs.db"
    if kind == "tables":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE notes (body TEXT)")
            conn.execute("INSERT INTO notes VALUES ('mine')")
        conn.close()
    else:
        path.write_bytes(b"just some text, not a database\n" * 100)
    before = path.read_bytes()
    result = CliRunner().invoke(main, ["jobs", "--db", str(path)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.db"]  # no -wal, no -shm


def test_a_store_at_0002_holding_data_upgrades_with_its_data(empty_engine: Engine) -> None:
    """A store frozen at the previous revision, written as 0002's code wrote it (through SQL
    of that schema), upgraded: every row stays, nothing cascades, the new columns are filled."""
    engine = empty_engine
    store_db.upgrade(engine, "0002")
    t1, t2 = T0 + H, T0 + 2 * H
    with engine.begin() as conn:
        run = {
            "command": "snapshot",
            "requests": 1,
            "jobs_seen": 1,
            "jobs_changed": 1,
            "snapshots_added": 1,
            "transitions": 1,
            "errors": 0,
        }
        conn.execute(
            text(
                "INSERT INTO sources (id, name, base_url, created_at) "
                "VALUES (1, 's', 'http://x', :t)"
            ),
            {"t": T0},
        )
        for rid, (done, completed) in enumerate([(t1, True), (t2, False)], start=1):
            conn.execute(
                text(
                    "INSERT INTO collector_runs (id, command, source_id, started_at, finished_at, "
                    "outcome, list_completed, requests, jobs_seen, jobs_changed, snapshots_added, "
                    "transitions, errors) VALUES (:id, :command, 1, :t0, :done, 'ok', :completed, "
                    ":requests, :jobs_seen, :jobs_changed, :snapshots_added, :transitions, :errors)"
                ),
                {**run, "id": rid, "t0": T0, "done": done, "completed": completed},
            )
        conn.execute(
            text(
                "INSERT INTO jobs (id, source_id, job_id, status, created_at, first_seen_at, "
                "last_seen_at, payload_sha256, model) VALUES (1, 1, 'ftjob-1', 'succeeded', :t, "
                ":t, :t2, :sha, 'm')"
            ),
            {"t": T0, "t2": t2, "sha": "a" * 64},
        )
        conn.execute(
            text("INSERT INTO hyperparameters (job_pk, batch_size, extra) VALUES (1, 8, '{}')")
        )
        conn.execute(
            text(
                "INSERT INTO raw_payloads (job_pk, sha256, body, first_observed_at, "
                "last_observed_at) VALUES (1, :sha, '{}', :t, :t2)"
            ),
            {"sha": "a" * 64, "t": T0, "t2": t2},
        )
        conn.execute(
            text(
                "INSERT INTO snapshots (job_pk, status, first_observed_at, last_observed_at, "
                "observations) VALUES (1, 'succeeded', :t, :t2, 2)"
            ),
            {"t": T0, "t2": t2},
        )
        for hid, (old, new, at, prev) in enumerate(
            [(None, "running", T0, None), ("running", "succeeded", t1, T0)], start=1
        ):
            conn.execute(
                text(
                    "INSERT INTO status_history (id, job_pk, from_status, to_status, observed_at, "
                    "previous_observed_at) VALUES (:id, 1, :old, :new, :at, :prev)"
                ),
                {"id": hid, "old": old, "new": new, "at": at, "prev": prev},
            )
        conn.execute(
            text(
                "INSERT INTO notifications (status_change_id, channel, created_at, attempts) "
                "VALUES (2, 'command:abc', :t, 0)"
            ),
            {"t": t1},
        )
        conn.execute(
            text(
                "INSERT INTO events (job_pk, event_id, created_at, body, first_observed_at, data) "
                "VALUES (1, 'ev-1', :t, '{}', :t, '{\"step\": 1}')"
            ),
            {"t": T0},
        )
        conn.execute(
            text(
                "INSERT INTO checkpoints (job_pk, checkpoint_id, created_at, step_number, "
                "train_loss, body, first_observed_at) VALUES (1, 'ck-1', :t, 10, 0.5, '{}', :t)"
            ),
            {"t": T0},
        )
        if engine.dialect.name == "postgresql":  # ids were given: move the sequences on
            for table in ("sources", "collector_runs", "jobs", "status_history"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 10)"))
    store_db.upgrade(engine)
    expected = {
        Source: 1,
        CollectorRun: 2,
        Job: 1,
        RawPayload: 1,
        Snapshot: 1,
        StatusChangeRow: 2,
        Notification: 1,
        Event: 1,
        Checkpoint: 1,
    }
    with engine.connect() as conn:
        for model, n in expected.items():
            assert conn.execute(select(func.count()).select_from(model)).scalar_one() == n, model
        assert conn.execute(select(Source.listed_at)).scalar_one() == t1
        assert sorted(conn.execute(select(CollectorRun.status_changes)).scalars()) == [1, 1]
        assert conn.execute(select(Event.data)).scalar_one() == {"step": 1}
        assert conn.execute(select(Checkpoint.train_loss)).scalar_one() == 0.5
        assert conn.execute(select(Job.model)).scalar_one() == "m"
        assert store_db.current_revision(conn) == store_db.head_revision()
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    # And back: the downgrade keeps the rows too (it drops only what 0003 added).
    store_db.downgrade(engine, "0002")
    with engine.connect() as conn:
        for model in (Job, Snapshot, Notification, Event):
            assert conn.execute(select(func.count()).select_from(model.__table__)).scalar_one() == 1
