"""Alembic environment: runs on the connection ftlog passes in, or on -x db=URL by hand."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, TypeDecorator

from ftlog.db import create_store_engine, resolve_url
from ftlog.schema import metadata as target_metadata_tables

config = context.config
target_metadata = target_metadata_tables


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render ftlog's own column types as the plain types they store, so that migrations
    stay valid when the model code changes."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = create_store_engine(resolve_url(context.get_x_argument(as_dictionary=True).get("db")))
    with engine.begin() as conn:
        run_migrations(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("ftlog migrations run online only: pass a database with -x db=URL")
run_online()
