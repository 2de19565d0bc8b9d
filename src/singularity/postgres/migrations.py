"""Alembic, one environment per database, driven from code (no alembic.ini).

Migrations run as the administrator under `SET ROLE <owner>`, so that what they create belongs
to the service role that owns the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from singularity.postgres.endpoint import Endpoint
from singularity.postgres.sql import QUERIES
from singularity.postgres.topology import Database

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["MigrationResult", "current_revision", "head_revision", "run_environment", "upgrade"]

# Alembic and SQLAlchemy are imported inside the functions that use them: they cost about
# 0.3 s, which every `singularity` command would otherwise pay at start-up.


@dataclass(frozen=True)
class MigrationResult:
    database: Database
    before: str | None
    after: str | None
    name: str = ""  # the real database name (an instance's, for Singularity)

    @property
    def changed(self) -> bool:
        return self.before != self.after


def script_location(database: Database) -> Path:
    return Path(str(files("singularity").joinpath("migrations", database.value)))


def alembic_config(database: Database) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location(database)))
    return config


def head_revision(database: Database) -> str | None:
    """The newest migration shipped for a database."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(database)).get_current_head()


def current_revision(conn: psycopg.Connection[Any]) -> str | None:
    """The migration a database is at (None before the first), read with a plain query."""
    try:
        with conn.transaction():
            row = conn.execute(QUERIES["migration_version"]).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    if row is None:
        return None
    return str(row["version_num"] if isinstance(row, dict) else row[0])


def upgrade(endpoint: Endpoint, database: Database, owner: str | None) -> MigrationResult:
    """Apply pending migrations to one database (blocking; call it from a thread)."""
    with psycopg.connect(endpoint.conninfo(), autocommit=True) as probe:
        before = current_revision(probe)
    head = head_revision(database)
    if before == head:
        return MigrationResult(database, before, head)
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(endpoint.conninfo()),
        poolclass=NullPool,
    )
    try:
        with engine.connect() as connection:
            if owner is not None:
                quoted = connection.dialect.identifier_preparer.quote(owner)
                connection.exec_driver_sql(f"SET ROLE {quoted}")
            config = alembic_config(database)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
    finally:
        engine.dispose()
    return MigrationResult(database, before, head)


def run_environment(context: Any) -> None:
    """The body of every env.py: run migrations on the connection `upgrade()` hands over."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations with `singularity db migrate`, not the alembic command")
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
