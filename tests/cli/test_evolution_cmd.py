"""`singularity genesis evolution ...`, run as a user runs them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from helpers import singularity
from singularity.genesis.evolution import EvolutionConfig, Program, ProgramDatabase, open_engine
from singularity.genesis.evolution.schema import create_schema
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import connection
from singularity.postgres.topology import Database


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    """A SQLite run with a few programs."""
    path = tmp_path / "run.db"
    engine = open_engine(f"sqlite:///{path}")
    create_schema(engine)
    db = ProgramDatabase(engine, EvolutionConfig(num_islands=2, seed=1))
    root = db.add(Program(code="x = 1", correct=True, combined_score=0.5, embedding=[1.0, 0.0]))
    for generation in (1, 2, 3):
        db.add(Program(code=f"x = {generation}", parent_id=root, generation=generation))
    db.close()
    return path


@pytest.fixture
def scratch_url(cluster: Cluster) -> Iterator[str]:
    name = f"{cluster.database_name(Database.GENESIS)}_cli_{uuid.uuid4().hex[:8]}"
    maintenance = cluster.maintenance(Database.GENESIS)
    with connection(maintenance) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield maintenance.with_database(name).url()
    with connection(maintenance) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_migrate_copies_a_run_and_a_second_run_copies_nothing(
    run_file: Path, scratch_url: str
) -> None:
    first = singularity(
        "genesis", "evolution", "migrate", "--from", f"sqlite:///{run_file}", "--to", scratch_url
    )
    assert first.returncode == 0, first.stderr
    assert "verified" in first.stdout and "(8 rows written)" in first.stdout
    again = singularity(
        "genesis", "evolution", "migrate", "--from", f"sqlite:///{run_file}", "--to", scratch_url
    )
    assert again.returncode == 0, again.stderr
    assert "(0 rows written)" in again.stdout
    shown = singularity("genesis", "evolution", "stats", "--db", scratch_url)
    assert shown.returncode == 0, shown.stderr
    assert "archive: 1" in shown.stdout and "last generation: 3" in shown.stdout


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("sqlite:///{missing}", "sqlite:///{out}", "no such SQLite file"),
        ("not a url", "sqlite:///{out}", "not a database URL"),
        ("sqlite:///{run}", "mysql://h/d", "unsupported database 'mysql'"),
        ("sqlite:///{run}", "postgresql://nobody@127.0.0.1:1/x", "cannot reach the database"),
    ],
)
def test_bad_urls_and_files_give_one_line(
    run_file: Path, tmp_path: Path, source: str, target: str, message: str
) -> None:
    paths = {"missing": tmp_path / "missing.db", "out": tmp_path / "out.db", "run": run_file}
    failed = singularity(
        "genesis", "evolution", "migrate",
        "--from", source.format(**paths), "--to", target.format(**paths),
    )  # fmt: skip
    assert failed.returncode != 0
    assert failed.stderr.startswith("error: ") and message in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr


def test_stats_of_a_new_sqlite_run(tmp_path: Path) -> None:
    shown = singularity("genesis", "evolution", "stats", "--db", f"sqlite:///{tmp_path / 'n.db'}")
    assert shown.returncode == 0, shown.stderr
    assert "archive: 0" in shown.stdout and "last generation: -" in shown.stdout
