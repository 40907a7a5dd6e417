"""Shared fixtures: isolated user directories, and a store on SQLite and on Postgres.

Postgres tests use ``FTLOG_TEST_POSTGRES_URL``; each test gets a schema of its own (through
``search_path``), dropped afterwards. Unset outside CI, they skip; in CI (``CI=true``) a
missing or unreachable Postgres fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from ftlog.db import create_store_engine, ensure_schema
from ftlog.simulator import JobSpec, ManualClock, SimulatedAPI
from ftlog.simulator.server import serve_in_thread
from tests.helpers import T0, TOKEN, Sim

POSTGRES_ENV = "FTLOG_TEST_POSTGRES_URL"
_FTLOG_ENV = (
    "FTLOG_PROFILE",
    "FTLOG_NOTIFY_WEBHOOK",
    "FTLOG_DATABASE_URL",
    "FTLOG_BASE_URL",
    "FTLOG_API_KEY",
    "NEBIUS_API_KEY",
    "FTLOG_CONFIG",
)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the user's data and config directories at tmp_path; drop ftlog's variables."""
    for name in _FTLOG_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{POSTGRES_ENV} is not set; CI must test on Postgres")
        pytest.skip(
            f"Postgres tests need {POSTGRES_ENV} (e.g. "
            "postgresql+psycopg://postgres@127.0.0.1:5432/test); .ci/run sets it"
        )
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A Postgres URL whose search_path is a fresh, empty schema."""
    with postgres_schema(_postgres_base_url()) as url:
        yield url


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A URL for ``base_url`` whose search_path is a fresh, empty schema, dropped after."""
    base = make_url(base_url)
    schema = f"ftlog_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as err:
        admin.dispose()
        pytest.fail(
            f"Postgres at {base.render_as_string(hide_password=True)} is unreachable: "
            f"{str(err).splitlines()[0]}"
        )
    url = base.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store's URL, once on SQLite and once on Postgres."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def empty_engine(db_url: str) -> Iterator[Engine]:
    engine = create_store_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(empty_engine: Engine) -> Engine:
    """A store at the head revision."""
    ensure_schema(empty_engine)
    return empty_engine


SimFactory = Callable[..., Sim]


@pytest.fixture
def sim_factory() -> Iterator[SimFactory]:
    """Starts simulated APIs (a ManualClock at ``now``) on loopback ports for the test."""
    with ExitStack() as stack:

        def start(jobs: list[JobSpec], *, faults: str = "", now: float = T0) -> Sim:
            clock = ManualClock(now)
            api = SimulatedAPI(jobs, clock=clock, faults=faults, token=TOKEN)
            return Sim(api, clock, stack.enter_context(serve_in_thread(api)))

        yield start
