"""``ftlog db``: the store's schema revisions."""

from __future__ import annotations

import click

from ftlog.cli.options import db_option


@click.group()
def db() -> None:
    """Show and move the store's schema revision (alembic migrations)."""


@db.command()
@db_option
def upgrade(db_url: str | None) -> None:
    """Upgrade the store's schema to this ftlog's revision (creating the store, and its
    schema, if there is none)."""
    from ftlog import db as store_db

    with store_db.store_engine(db_url, create=True) as engine:
        store_db.upgrade(engine)
        with engine.connect() as conn:
            click.echo(f"schema at revision {store_db.current_revision(conn)} (head)")


@db.command()
@db_option
def current(db_url: str | None) -> None:
    """Print the store's schema revision, and whether it is this ftlog's head."""
    from ftlog import db as store_db

    with store_db.store_engine(db_url) as engine, engine.connect() as conn:
        revision = store_db.current_revision(conn)
    head = store_db.head_revision()
    if revision is None:
        click.echo(f"no schema yet (this ftlog's head is {head}); run: ftlog db upgrade")
    elif revision == head:
        click.echo(f"{revision} (head)")
    else:
        click.echo(f"{revision} (this ftlog's head is {head})")


@db.command()
def history() -> None:
    """List the schema revisions this ftlog knows, newest first."""
    from ftlog import db as store_db

    for revision in store_db.revisions():
        click.echo(revision)


@db.command()
@click.argument("revision")
@db_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def downgrade(revision: str, db_url: str | None, yes: bool) -> None:
    """Move the schema back to REVISION (an id from 'ftlog db history', or 'base').

    Downgrading drops the tables and columns that later revisions added, with their data.
    Back up the store first; ftlog asks before it does this unless --yes is given.
    """
    from ftlog import db as store_db
    from ftlog.config import masked_url

    with store_db.store_engine(db_url) as engine:
        if not yes:
            shown = masked_url(engine.url.render_as_string(hide_password=False))
            click.confirm(
                f"Downgrade {shown} to {revision}? Data in tables or columns added after it is "
                "deleted.",
                abort=True,
            )
        store_db.downgrade(engine, revision)
        with engine.connect() as conn:
            click.echo(f"schema at revision {store_db.current_revision(conn) or 'base (empty)'}")
