"""Fixtures of the evolution tests: every test runs on SQLite and on PostgreSQL.

PostgreSQL: one scratch database per test module on the session's server (created by the
administrator, dropped at the end), its tables dropped after every test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from psycopg import sql

from singularity.genesis.evolution import EvolutionConfig, ProgramDatabase, open_engine
from singularity.genesis.evolution.schema import create_schema, metadata
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import connection
from singularity.postgres.topology import Database

Factory = Callable[..., ProgramDatabase]


@pytest.fixture(scope="module")
def postgres_url(cluster: Cluster) -> Iterator[str]:
    """A scratch PostgreSQL database for this module, as a URL (the administrator's)."""
    name = f"{cluster.database_name(Database.GENESIS)}_evo_{uuid.uuid4().hex[:8]}"
    maintenance = cluster.maintenance(Database.GENESIS)
    with connection(maintenance) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield maintenance.with_database(name).url()
    with connection(maintenance) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'evolution.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[str]:
    """The URL of an empty database of each backend."""
    if request.param == "sqlite":
        yield sqlite_url
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    engine = open_engine(url)
    metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def make_db(db_url: str) -> Iterator[Factory]:
    """Open program databases (with their tables) on the test's backend; closed afterwards."""
    opened: list[ProgramDatabase] = []

    def make(**config: object) -> ProgramDatabase:
        engine = open_engine(db_url)
        create_schema(engine)
        database = ProgramDatabase(engine, EvolutionConfig(**config))  # type: ignore[arg-type]
        opened.append(database)
        return database

    yield make
    for database in opened:
        database.close()


@pytest.fixture
def db(make_db: Factory) -> ProgramDatabase:
    """A database with two islands, migration off, a seeded random source."""
    return make_db(num_islands=2, migration_interval=0, archive_size=5, seed=7)
