"""One schema: the Alembic migration agrees with the SQLAlchemy tables; backend choice."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, MetaData, Text, inspect
from sqlalchemy.dialects.postgresql import JSONB

from singularity.config import Settings, load_settings
from singularity.errors import SingularityError, UsageError
from singularity.genesis.evolution import (
    Program,
    open_engine,
    open_program_database,
    resolve_target,
)
from singularity.genesis.evolution.schema import (
    TABLES,
    archive,
    metadata,
    metadata_store,
    programs,
    require_schema,
)
from singularity.postgres.cluster import Cluster
from singularity.postgres.topology import Database, Role

NAMES = {table.name for table in TABLES}


def test_the_migrated_genesis_database_matches_the_tables(cluster: Cluster) -> None:
    engine = open_engine(cluster.admin(Database.GENESIS).url())
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_name": lambda name, kind, _parent: kind != "table" or name in NAMES,
                },
            )
            assert compare_metadata(context, metadata) == []
            altered = MetaData()
            for table in TABLES:
                table.to_metadata(altered)
            altered.tables["programs"].append_column(Column("extra", Text))
            # The comparison can fail: a column the migration lacks is reported.
            assert [d[0] for d in compare_metadata(context, altered)] == ["add_column"]
        found = inspect(engine)
        for table in TABLES:
            columns = {c["name"]: c for c in found.get_columns(table.name)}
            assert list(columns) == [c.name for c in table.columns]
            for column in table.columns:
                assert columns[column.name]["nullable"] == column.nullable, column.name
        embedding = next(c for c in found.get_columns("programs") if c["name"] == "embedding")
        assert isinstance(embedding["type"], JSONB)
        indexes = {i["name"]: i["column_names"] for i in found.get_indexes("programs")}
        assert indexes == {
            index.name: [c.name for c in index.columns] for index in TABLES[0].indexes
        }
    finally:
        engine.dispose()


def test_the_platforms_database_is_used_as_migrated(cluster: Cluster, tmp_path: Path) -> None:
    url = cluster.service(Role.GENESIS, Database.GENESIS).url()
    settings = load_settings(_env_file=None, genesis_database_url=url, genesis_data_dir=tmp_path)
    target = resolve_target(settings)
    assert target.platform and target.url.drivername == "postgresql+psycopg"
    db = open_program_database(settings)  # the genesis role reads and writes, creates nothing
    try:
        added = db.add(Program(code="x", correct=True, combined_score=1.0))
        assert db.get(added).island_idx is not None and added in db.archive_ids()
    finally:
        with db.engine.begin() as conn:  # the platform's database is shared by the session
            conn.execute(archive.delete().where(archive.c.program_id == added))
            conn.execute(programs.delete().where(programs.c.id == added))
            conn.execute(metadata_store.delete())
        db.close()


def test_an_unmigrated_database_is_refused_with_one_line(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    with pytest.raises(SingularityError, match="singularity db migrate"):
        require_schema(engine)
    engine.dispose()


def test_without_a_url_the_run_lives_in_sqlite(tmp_path: Path, no_settings_env: None) -> None:
    settings = Settings(_env_file=None, genesis_data_dir=tmp_path / "g")  # type: ignore[call-arg]
    target = resolve_target(settings)
    assert not target.platform
    assert target.url.database == str(tmp_path / "g" / "evolution.db")
    db = open_program_database(settings)
    db.close()
    assert (tmp_path / "g" / "evolution.db").is_file()
    given = resolve_target(settings, "postgresql://u@h/d")
    assert given.url.drivername == "postgresql+psycopg" and not given.platform
    with pytest.raises(UsageError):
        resolve_target(settings, "sqlite://")
