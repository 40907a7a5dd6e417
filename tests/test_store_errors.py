"""Opening the store: readers never create one, and every problem is one line with the store
(password masked), the fix, and exit code 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from ftlog import analysis, settings
from ftlog.cli import main
from ftlog.errors import StoreError
from ftlog.simulator import make_jobs
from tests.helpers import T0, TOKEN, one_line_error

READERS: list[tuple[str, ...]] = [
    ("jobs",),
    ("show", "ftjob-x"),
    ("throughput",),
    ("compare", "ftjob-x"),
    ("export", "jobs"),
    ("cost",),
    ("db", "current"),
]


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


@pytest.mark.parametrize("args", READERS, ids=" ".join)
@pytest.mark.parametrize("form", ["path", "url"])
def test_a_reader_never_creates_a_store(args: tuple[str, ...], form: str, tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    db = str(typo) if form == "path" else f"sqlite:///{typo}"
    one_line_error(cli(*args, "--db", db), f"no ftlog store at {typo}", "ftlog snapshot")
    assert list(tmp_path.iterdir()) == []


def test_plot_never_creates_a_store(tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    result = cli("plot", "loss", "ftjob-x", "-o", str(tmp_path / "x.png"), "--db", str(typo))
    one_line_error(result, f"no ftlog store at {typo}")
    assert list(tmp_path.iterdir()) == []


def test_the_default_store_is_not_created_by_reading(tmp_path: Path) -> None:
    default = tmp_path / "xdg-data" / "ftlog" / "ftlog.db"
    one_line_error(cli("jobs"), f"no ftlog store at {default}")
    assert not default.parent.exists()


def test_the_library_never_creates_a_store_either(tmp_path: Path) -> None:
    for store in (str(tmp_path / "typo.db"), f"sqlite:///{tmp_path / 'typo2.db'}"):
        with pytest.raises(StoreError, match="no ftlog store at"):
            analysis.load_jobs(store)
        with pytest.raises(StoreError, match="no ftlog store at"):
            analysis.throughput_summary(store, model="x")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_database_is_not_given_a_schema_by_a_reader(
    empty_engine: Engine, db_url: str
) -> None:
    with empty_engine.connect():
        pass  # the database exists (on SQLite: an empty file), with no tables
    for args in READERS[:-1]:
        one_line_error(cli(*args, "--db", db_url), "holds no ftlog store yet", "ftlog snapshot")
    with pytest.raises(StoreError, match="holds no ftlog store yet"):
        analysis.load_jobs(db_url)
    assert "no schema yet" in cli("db", "current", "--db", db_url).output
    assert cli("db", "upgrade", "--db", db_url).exit_code == 0  # the writer does create it
    assert cli("jobs", "--db", db_url).output.strip() == "(no jobs)"


def test_a_writer_creates_a_store_but_not_its_folder(tmp_path: Path, sim_factory: Any) -> None:
    sim = sim_factory(make_jobs(2, seed=1, start=T0), now=T0 + 10_000_000)
    env = {settings.API_KEY: TOKEN, settings.BASE_URL: sim.base_url}
    missing = tmp_path / "missing" / "x.db"
    for db in (str(missing), f"sqlite:///{missing}"):
        one_line_error(
            cli("snapshot", "--db", db, env=env),
            f"cannot create the store {missing}",
            f"the folder {missing.parent} does not exist",
        )
    assert not missing.parent.exists()
    store = tmp_path / "new.db"
    assert cli("snapshot", "--db", str(store), env=env).exit_code == 0
    assert store.exists()
    # The embedded store's own folder is made for it.
    assert cli("snapshot", env=env).exit_code == 0
    assert (tmp_path / "xdg-data" / "ftlog" / "ftlog.db").exists()


def test_a_read_only_sqlite_store_is_named_with_the_fix(engine: Engine, tmp_path: Path) -> None:
    path = make_url(engine.url).database
    if engine.dialect.name != "sqlite" or path is None:
        pytest.skip("the SQLite half")
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    assert cli("jobs", "--db", read_only).exit_code == 0  # reading needs no write access
    job = '{"id": "ftjob-1", "status": "queued", "created_at": 1767225600, "model": "m"}'
    result = CliRunner().invoke(main, ["ingest", "-", "--db", read_only], input=job)
    one_line_error(result, f"the store {path} is read-only", "chmod u+w")


def test_a_read_only_postgres_store_is_named_with_the_fix(
    engine: Engine, db_url: str, sim_factory: Any
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the Postgres half")
    url = make_url(db_url)
    options = f"{url.query['options']} -cdefault_transaction_read_only=on"
    read_only = url.update_query_dict({"options": options}).render_as_string(False)
    sim = sim_factory(make_jobs(2, seed=1, start=T0), now=T0 + 10_000_000)
    env = {settings.API_KEY: TOKEN, settings.BASE_URL: sim.base_url}
    assert cli("jobs", "--db", read_only).exit_code == 0
    shown = make_url(read_only).render_as_string(hide_password=True)
    one_line_error(cli("snapshot", "--db", read_only, env=env), f"the store {shown} is read-only")


def test_an_unreachable_postgres_is_named_with_its_password_masked(postgres_url: str) -> None:
    closed = make_url(postgres_url).set(host="127.0.0.1", port=1, password="s3cret-pw")
    line = one_line_error(
        cli("jobs", "--db", closed.render_as_string(hide_password=False)),
        "cannot connect to the store",
        "127.0.0.1:1",
        "is the server running",
    )
    assert "s3cret-pw" not in line and "***" in line


def test_a_missing_postgres_database_is_named(postgres_url: str) -> None:
    nowhere = make_url(postgres_url).set(database="ftlog_no_such_database")
    one_line_error(
        cli("jobs", "--db", nowhere.render_as_string(hide_password=False)),
        "ftlog_no_such_database",
        "does not exist",
    )


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_and_postgresql_urls_use_psycopg(postgres_url: str, scheme: str) -> None:
    """What Heroku-style DATABASE_URLs hold works as it is."""
    url = make_url(postgres_url).set(drivername=scheme).render_as_string(hide_password=False)
    assert url.startswith(f"{scheme}://")
    upgraded = cli("db", "upgrade", "--db", url)
    assert upgraded.exit_code == 0, upgraded.output
    assert cli("jobs", "--db", url).output.strip() == "(no jobs)"
    assert cli("jobs", env={settings.DATABASE_URL: url}).exit_code == 0


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "notes.db"
    junk.write_text("these are my notes, not a database" * 100)
    one_line_error(cli("jobs", "--db", str(junk)), f"{junk} is not a SQLite database")
    assert "notes, not a database" in junk.read_text()


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://user:pw@host/db", "SQLite or Postgres, not mysql (mysql://user:***@host/db)"),
        ("postgresql+nodriver://u@h/db", "cannot use database URL postgresql+nodriver://u@h/db"),
        ("://nothing", "is not a database URL"),
    ],
)
def test_unusable_urls(url: str, fragment: str) -> None:
    one_line_error(cli("jobs", "--db", url), fragment)
