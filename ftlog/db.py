"""Opening the store: which database, how it is connected, and its schema revision."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.exc import NoSuchModuleError as NoSuchDialect

from ftlog import settings
from ftlog.config import masked_url
from ftlog.errors import Busy, SchemaError, StoreError, UsageProblem

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 60
"""How long a writer waits for another (an overlapping cron run) before giving up (exit 75)."""
SQLITE_BUSY_TIMEOUT_MS = LOCK_TIMEOUT_S * 1000
SCHEMA_LOCK = 0x66746C6F67  # "ftlog": the Postgres advisory lock that migrations hold


def resolve_url(db: str | None) -> str:
    """The database URL for ``db``, else ``$FTLOG_DATABASE_URL``, else the embedded store
    (a SQLite file in the user data directory).

    A value without ``://`` is a path to a SQLite file (``~`` expanded).
    """
    value = db or settings.env(settings.DATABASE_URL)
    if value is None:
        return settings.default_database_url()
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    return value


def _is_sqlite(url: str) -> bool:
    try:
        return make_url(url).get_backend_name() == "sqlite"
    except ArgumentError:
        return False


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, absolute; None for another database or an in-memory one."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if parsed.query.get("uri") in ("true", "1"):
        database = database.removeprefix("file:").split("?", 1)[0]
        if not database or database == ":memory:" or parsed.query.get("mode") == "memory":
            return None
    return Path(database).expanduser().absolute()


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout, foreign keys and real BEGINs.

    ``postgres://`` and ``postgresql://`` (as Heroku-style ``DATABASE_URL``s hold them) use
    psycopg 3. Errors the user can fix (a read-only or missing file, an unreachable server)
    are raised as one-line :class:`StoreError` exceptions naming the store, password masked.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"{masked_url(url)} is not a database URL; use sqlite:///path.db, "
            "postgresql://user@host/db or a path to a SQLite file"
        ) from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername.startswith("postgres+"):
        parsed = parsed.set(drivername="postgresql" + parsed.drivername[len("postgres") :])
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"ftlog stores its history in SQLite or Postgres, not {parsed.get_backend_name()} "
            f"({masked_url(url)})"
        )
    try:
        engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except (ArgumentError, NoSuchDialect, ImportError) as err:
        hint = " (pip install 'ftlog[postgres]')" if "psycopg" in str(err) else ""
        raise StoreError(f"cannot use database URL {masked_url(url)}: {err}{hint}") from None
    _report_store_errors(engine, url)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    else:
        _configure_postgres(engine)
    return engine


def redacted(url: str) -> str:
    """``url`` for display, its password masked (as everywhere: :func:`masked_url`)."""
    return masked_url(url)


def _report_store_errors(engine: Engine, url: str) -> None:
    """Turn the database errors a user can fix into a one-line :class:`StoreError`, wherever
    they happen (opening the store, or the first write into a read-only one)."""

    @event.listens_for(engine, "handle_error")
    def on_error(context: ExceptionContext) -> None:
        if context.is_pre_ping:
            return
        problem = store_problem(url, context.original_exception)
        if problem is not None:
            raise StoreError(problem) from None


_POSTGRES_PROBLEMS = {
    "25006": "is read-only (the server refuses writes)",
    "42501": "refuses this user (permission denied)",
    "53100": "is out of disk space",
    "3D000": "does not exist on the server",
    "28P01": "refused the password",
    "28000": "refused this user",
}
"""SQLSTATEs of store problems the user fixes, and what they mean."""
_WHERE = f"--db, ${settings.DATABASE_URL} or the profile"


def store_problem(url: str, err: BaseException) -> str | None:
    """One line naming the store and the fix for an error the user can act on; None for
    anything else (lock timeouts, conflicts and bugs are handled elsewhere)."""
    name = getattr(err, "sqlite_errorname", None)
    if name is not None:
        path = sqlite_file(url)
        where = str(path) if path is not None else masked_url(url)
        if name.startswith("SQLITE_READONLY"):
            return (
                f"the store {where} is read-only: make it and its folder writable "
                f"(chmod u+w), or point {_WHERE} at a store you can write"
            )
        if name.startswith("SQLITE_CANTOPEN"):
            if path is not None and not path.parent.is_dir():
                return f"cannot open the store {where}: the folder {path.parent} does not exist"
            return f"cannot open the store {where}: check that it is a file you can read"
        if name == "SQLITE_NOTADB":
            return f"{where} is not a SQLite database: check {_WHERE}"
        if name == "SQLITE_FULL":
            return f"the disk holding the store {where} is full"
        return None
    module = type(err).__module__
    if not module.startswith("psycopg"):
        return None
    shown = masked_url(url)
    meaning = _POSTGRES_PROBLEMS.get(getattr(err, "sqlstate", None) or "")
    if meaning is not None:
        return f"the store {shown} {meaning}: {first_line(err)}"
    if type(err).__name__ == "OperationalError" and getattr(err, "sqlstate", None) is None:
        # psycopg gives no SQLSTATE when it cannot reach the server at all.
        return (
            f"cannot connect to the store {shown}: {first_line(err)} (is the server running, "
            f"and the URL right? {_WHERE})"
        )
    return None


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
    checked once it committed.

    Migrations run one at a time: the transaction takes the write lock (SQLite) or an
    advisory lock (Postgres) first, so runs that start together on a new store wait for the
    first to create the schema, and alembic then finds it at head."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # On the driver's connection: through SQLAlchemy it would start a transaction,
            # inside which SQLite ignores this pragma.
            conn.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
            conn.execution_options(sqlite_begin="IMMEDIATE")
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
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


def ensure_schema(engine: Engine, *, create: bool = True) -> None:
    """Create the schema in an empty database; refuse one behind or ahead of this ftlog.

    An empty database runs the whole migration chain (there is no other way to create it);
    without ``create``, it is a :class:`StoreError` (a reader never writes a schema).
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
        raise StoreError(f"cannot open the store {_shown(engine)}: {first_line(err)}") from None
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    if current == head:
        _use_wal(engine)
        return
    if empty and not create:
        raise StoreError(
            f"{_shown(engine)} holds no ftlog store yet: ftlog snapshot records into it "
            "(ftlog db upgrade creates the schema)"
        )
    if empty:
        log.info("empty database: creating the schema (revision %s)", head)
        upgrade(engine)
        return
    if current is None:
        raise SchemaError(
            f"{_shown(engine)} has tables but no ftlog schema revision: point {_WHERE} at "
            "an ftlog store or an empty database"
        )
    try:
        script.get_revision(current)
    except CommandError:
        raise SchemaError(
            f"the schema of {_shown(engine)} ({current}) is newer than this ftlog knows "
            f"(head {head}); upgrade ftlog"
        ) from None
    raise SchemaError(
        f"the schema of {_shown(engine)} ({current}) is behind this ftlog ({head}); "
        "run: ftlog db upgrade (with the same --db or --profile)"
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


def first_line(err: BaseException) -> str:
    """The gist of a driver's message: its first line that says something."""
    orig = getattr(err, "orig", None) or err
    for raw in str(orig).splitlines():
        line = raw.strip().removeprefix("connection failed:").strip()
        line = re.sub(r"^connection to server at .*? failed:\s*", "", line)
        line = line.removeprefix("FATAL:").strip()
        if line:
            return line
    return type(orig).__name__


def _shown(engine: Engine) -> str:
    """The store for messages: its file, or its URL with the password masked."""
    url = engine.url.render_as_string(hide_password=False)
    path = sqlite_file(url)
    return str(path) if path is not None else masked_url(url)


@contextmanager
def store_engine(db: str | None, *, create: bool = False) -> Iterator[Engine]:
    """An engine for ``db`` (see :func:`resolve_url`), disposed of afterwards.

    A SQLite file that does not exist is created only with ``create``; otherwise it is a
    one-line :class:`StoreError` (exit 2) naming the path and the command that creates a
    store, so a mistyped path never leaves an empty store behind. With ``create``, the
    embedded store's folder is made if needed; any other folder must exist.
    """
    url = resolve_url(db)
    path = sqlite_file(url)
    if path is None and _is_sqlite(url):
        raise StoreError(
            f"{masked_url(url)} is an in-memory database: it keeps nothing once ftlog exits; "
            "give a file (--db ftlog.db) or a Postgres URL"
        )
    if path is not None and not path.exists():
        if not create:
            raise StoreError(
                f"no ftlog store at {path}: ftlog snapshot creates one (or check {_WHERE})"
            )
        if path == settings.default_database_path():
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.parent.is_dir():
            raise StoreError(
                f"cannot create the store {path}: the folder {path.parent} does not exist "
                "(create it first)"
            )
    engine = create_store_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def open_store(db: str | None, *, create: bool = False) -> Iterator[Engine]:
    """The engine for ``db`` (see :func:`store_engine`), its schema checked, or created in
    an empty database when ``create`` is true (the commands that record)."""
    with store_engine(db, create=create) as engine:
        ensure_schema(engine, create=create)
        yield engine
