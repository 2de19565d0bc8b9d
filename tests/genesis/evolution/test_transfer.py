"""Copying a run from SQLite to PostgreSQL: exact, verified, and idempotent."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from singularity.errors import SingularityError
from singularity.genesis.evolution import (
    EvolutionConfig,
    Program,
    ProgramDatabase,
    copy_run,
    open_engine,
)
from singularity.genesis.evolution.schema import TABLES, create_schema, metadata
from singularity.genesis.evolution.transfer import checksum


@pytest.fixture
def target(postgres_url: str) -> Iterator[str]:
    yield postgres_url
    engine = open_engine(postgres_url)
    metadata.drop_all(engine)
    engine.dispose()


def a_run(url: str) -> ProgramDatabase:
    """A small evolved run with migrations, awkward values and metadata."""
    engine = open_engine(url)
    create_schema(engine)
    db = ProgramDatabase(engine, EvolutionConfig(num_islands=3, migration_interval=2, seed=5))
    rng = random.Random(8)
    db.add(Program(code="seed 'quoted' \"text\" ünïcode\n", embedding=[0.1, 1e-300, -2.5]))
    for generation in range(1, 12):
        parent = db.sample().parent
        db.add(
            Program(
                code=f"gen {generation}",
                parent_id=parent.id,
                generation=generation,
                combined_score=rng.random() * 1e6,
                complexity=rng.random(),
                correct=rng.random() < 0.8,
                public_metrics={"score": rng.random(), "tags": ["a", {"b": None}], "n": 3},
                private_metrics={"huge": 1.7976931348623157e308, "tiny": 5e-324},
                embedding=[rng.random() for _ in range(8)],
                metadata={"model": "alpha", "empty": {}, "list": []},
            )
        )
    db.set_metadata("config", {"islands": 3, "nested": {"x": [1.5, "y"]}})
    return db


def figures(url: str) -> dict[str, tuple[int, str]]:
    engine = open_engine(url)
    with engine.connect() as conn:
        found = {table.name: checksum(conn, table) for table in TABLES}
    engine.dispose()
    return found


def test_a_run_copies_exactly_and_a_second_copy_is_a_no_op(sqlite_url: str, target: str) -> None:
    source = a_run(sqlite_url)
    reports = copy_run(sqlite_url, target)
    archived = len(source.archive_ids())
    assert [(r.table, r.rows, r.inserted, r.updated) for r in reports] == [
        ("programs", 12, 12, 0),
        ("archive", archived, archived, 0),
        ("metadata_store", 5, 5, 0),
    ]
    assert figures(sqlite_url) == figures(target)
    copied = ProgramDatabase(open_engine(target))
    for original in [p for g in range(12) for p in source.by_generation(g)]:
        back = copied.get(original.id)
        if "huge" in original.private_metrics:
            # JSONB returns a float written with an exponent as the integer of its decimal
            # value; as a float it is the same number.
            assert float(back.private_metrics["huge"]) == original.private_metrics["huge"]
            back = back.model_copy(update={"private_metrics": original.private_metrics})
        assert back == original  # every other value exactly, floats included
    assert copied.get_metadata("config") == {"islands": 3, "nested": {"x": [1.5, "y"]}}
    assert copied.archive_ids() == source.archive_ids()
    again = copy_run(sqlite_url, target)
    assert all(r.inserted == 0 and r.updated == 0 for r in again)
    assert [r.checksum for r in again] == [r.checksum for r in reports]
    copied.close()
    source.close()


def test_a_continued_run_copies_only_what_changed(sqlite_url: str, target: str) -> None:
    source = a_run(sqlite_url)
    copy_run(sqlite_url, target)
    parent = source.best()
    assert parent is not None
    source.add(Program(code="more", parent_id=parent.id, generation=12))
    reports = {r.table: r for r in copy_run(sqlite_url, target)}
    assert reports["programs"].inserted == 1
    assert reports["programs"].updated >= 1  # the parent's children_count
    assert figures(sqlite_url) == figures(target)
    source.close()


def test_a_target_with_foreign_rows_fails_verification(sqlite_url: str, target: str) -> None:
    a_run(sqlite_url).close()
    copy_run(sqlite_url, target)
    other = ProgramDatabase(open_engine(target))
    other.add(Program(code="not in the source", island_idx=0))
    other.close()
    with pytest.raises(SingularityError, match="programs differs after the copy"):
        copy_run(sqlite_url, target)


def test_bad_sources_are_refused(sqlite_url: str, tmp_path: Path) -> None:
    with pytest.raises(SingularityError, match="no such SQLite file"):
        copy_run(f"sqlite:///{tmp_path / 'missing.db'}", sqlite_url)
    with pytest.raises(SingularityError, match="unsupported database"):
        copy_run("mysql://x/y", sqlite_url)
    a_run(sqlite_url).close()
    with pytest.raises(SingularityError, match="the same database"):
        copy_run(sqlite_url, sqlite_url)
