"""The schema, its migration chain, and how commands treat a database at another revision."""

from __future__ import annotations

import subprocess
import sys
import venv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Engine, insert, inspect, text
from sqlalchemy.exc import IntegrityError

from ftlog import db as store_db
from ftlog.cli import main
from ftlog.models import Base, Job, RawPayload, Source, StatusChange

T0 = datetime(2026, 1, 1, tzinfo=UTC)
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
        conn.execute(insert(StatusChange).values(job_pk=job_pk, **row))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(StatusChange).values(job_pk=job_pk, **row))
    # A racing collector that saw the same change a moment later is rejected too: a change
    # after a given observation can be recorded once.
    later = {**row, "observed_at": T0 + timedelta(seconds=5)}
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(StatusChange).values(job_pk=job_pk, **later))


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


def test_db_commands_report_head(db_url: str) -> None:
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
