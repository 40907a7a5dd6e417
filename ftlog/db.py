"""Opening the store: which database, how it is connected, and its schema revision."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.exc import NoSuchModuleError as NoSuchDialect

from ftlog import settings
from ftlog.errors import Busy, FtlogError, SchemaError, UsageProblem

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 60
"""How long a writer waits for another (an overlapping cron run) before giving up (exit 75)."""
SQLITE_BUSY_TIMEOUT_MS = LOCK_TIMEOUT_S * 1000


def resolve_url(db: str | None) -> str:
    """The database URL from ``--db``, else FTLOG_DATABASE_URL, else the default SQLite file.

    A value without ``://`` is a path to a SQLite file.
    """
    value = db or settings.env(settings.DATABASE_URL)
    if value is None:
        path = settings.default_database_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if "://" not in value:
        path = Path(value).expanduser().resolve()
        if not path.parent.is_dir():
            raise UsageProblem(f"no directory {path.parent} for the SQLite file; create it first")
        return f"sqlite:///{path}"
    return value


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout, foreign keys and real BEGINs."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except (ArgumentError, NoSuchDialect, ImportError) as err:
        hint = " (pip install 'ftlog[postgres]')" if "psycopg" in str(err) else ""
        raise UsageProblem(f"cannot use database URL {redacted(url)}: {err}{hint}") from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    elif engine.dialect.name == "postgresql":
        _configure_postgres(engine)
    return engine


def redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and cannot take the write lock up
    # front; take over, so writers can BEGIN IMMEDIATE (see write_transaction).
    # Nothing here writes to the file: WAL mode, which does, is set only once the file is
    # known to be an ftlog store (see ensure_schema), so a foreign file is left untouched.
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())


def _configure_postgres(engine: Engine) -> None:
    # Batch executemany INSERTs into multi-row VALUES statements, as SQLAlchemy does for
    # psycopg2: psycopg 3 pipelines them, but still runs one statement per row on the server.
    engine.dialect.use_insertmanyvalues_wo_returning = True

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
        dbapi_connection.commit()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN.

    Taking the lock first means two collectors never both read a job's state and then both
    write a transition for it; the second waits (busy timeout) and then sees the first's work.
    """
    options = {"sqlite_begin": "IMMEDIATE"} if engine.dialect.name == "sqlite" else {}
    try:
        with engine.connect().execution_options(**options) as conn, conn.begin():
            yield conn
    except OperationalError as err:
        if _is_lock_timeout(err):
            raise Busy(
                f"another ftlog run has held the store for over {LOCK_TIMEOUT_S} s; "
                "this run stopped (what it recorded so far is kept)"
            ) from None
        raise


def _is_lock_timeout(err: OperationalError) -> bool:
    sqlstate = getattr(err.orig, "sqlstate", None)
    return sqlstate == "55P03" or "database is locked" in str(err.orig)


# --- migrations -------------------------------------------------------------------------


def migrations_dir() -> Path:
    """The alembic scripts: inside the installed wheel, or beside the package in a checkout."""
    bundled = Path(__file__).with_name("_migrations")
    if bundled.is_dir():
        return bundled
    return Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """The alembic configuration, built in code (no alembic.ini is needed at run time)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    return config


def revisions() -> list[str]:
    """The migration chain, newest first, one line each."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [
        f"{rev.revision}  {rev.doc}{'  (head)' if rev.is_head else ''}"
        for rev in script.walk_revisions()
    ]


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migration chain is empty"
    return head


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with _migrating(engine) as conn:
        command.upgrade(alembic_config(conn), revision)
    _use_wal(engine)


def downgrade(engine: Engine, revision: str) -> None:
    """Move the schema back to ``revision``. Every revision has a tested downgrade; it drops
    what later revisions added, data included."""
    from alembic import command
    from alembic.util import CommandError

    try:
        with _migrating(engine) as conn:
            command.downgrade(alembic_config(conn), revision)
    except CommandError as err:
        raise UsageProblem(
            f"cannot downgrade to {revision!r}: {err}; see ftlog db history"
        ) from None


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """A transaction for a migration. On SQLite, foreign keys are off during it: a migration
    rebuilds a table by copying it and dropping the original (alembic's batch mode), and with
    them on, dropping ``jobs`` would cascade to every row that refers to it. They are
    checked once it committed."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # On the driver's connection: through SQLAlchemy it would start a transaction,
            # inside which SQLite ignores this pragma.
            conn.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                yield conn
            if sqlite:
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
                conn.commit()
                if broken is not None:
                    raise SchemaError(f"the migration left a row of {broken[0]} without its parent")
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]


def _use_wal(engine: Engine) -> None:
    """Put an ftlog SQLite store in WAL mode (readers never wait for the collector). It is a
    setting of the file, made once; only ever on a file known to be an ftlog store."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        if driver.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            driver.execute("PRAGMA journal_mode = WAL")


def ensure_schema(engine: Engine) -> None:
    """Create the schema in an empty database; refuse one behind or ahead of this ftlog.

    An empty database runs the whole migration chain (there is no other way to create it).
    """
    if _at_scripted_head(engine):
        _use_wal(engine)
        return
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        with engine.connect() as conn:
            current = current_revision(conn)
            empty = current is None and not inspect(conn).get_table_names()
    except OperationalError as err:
        raise FtlogError(f"cannot open the database: {_first_line(err)}") from None
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    if current == head:
        _use_wal(engine)
        return
    if empty:
        log.info("empty database: creating the schema (revision %s)", head)
        upgrade(engine)
        return
    if current is None:
        raise SchemaError(
            "the database has tables but no ftlog schema revision; "
            "point --db at an ftlog store or an empty database"
        )
    try:
        script.get_revision(current)
    except CommandError:
        raise SchemaError(
            f"the database schema ({current}) is newer than this ftlog knows (head {head}); "
            "upgrade ftlog"
        ) from None
    raise SchemaError(
        f"the database schema ({current}) is behind this ftlog ({head}); run: ftlog db upgrade"
    )


_REVISION_LINE = re.compile(
    r"""^(revision|down_revision)\b[^=\n]*=\s*["']([^"']+)["']""", re.MULTILINE
)


def scripted_head() -> str | None:
    """The head revision read from the scripts' ``revision = "..."`` lines, without alembic;
    None unless they make one clear chain end (alembic's answer is then the one to use)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        for path in (migrations_dir() / "versions").glob("*.py"):
            script = path.read_text("utf-8")
            found = {m[1]: m[2] for m in _REVISION_LINE.finditer(script)}
            revisions.add(found["revision"])
            parents.add(found.get("down_revision", ""))
    except (OSError, KeyError, ValueError):
        return None
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_scripted_head(engine: Engine) -> bool:
    """Whether the store is at the head revision, checked without importing alembic (a fifth
    of a cron run's time). Anything unclear answers False, and alembic decides."""
    head = scripted_head()
    if head is None:
        return False
    try:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:
        return False
    return stored == [head]


def _first_line(err: Exception) -> str:
    orig = getattr(err, "orig", None) or err
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__


@contextmanager
def open_store(db: str | None) -> Iterator[Engine]:
    """The engine for ``--db`` (see resolve_url), with its schema checked or created."""
    engine = create_store_engine(resolve_url(db))
    try:
        ensure_schema(engine)
        yield engine
    finally:
        engine.dispose()
