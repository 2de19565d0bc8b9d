"""The novelty check by embedding similarity, on both backends."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from singularity.genesis.evolution import Program, ProgramDatabase

Factory = Callable[..., ProgramDatabase]


def vector(seed: int, dim: int = 64) -> list[float]:
    return np.random.default_rng(seed).normal(size=dim).tolist()


def test_a_near_duplicate_is_found_and_a_new_idea_is_novel(db: ProgramDatabase) -> None:
    ids = [db.add(Program(code=f"v{i}", embedding=vector(i), island_idx=0)) for i in range(20)]
    near = np.array(vector(7)) * 3 + np.random.default_rng(99).normal(scale=0.01, size=64)
    found = db.nearest(near.tolist(), 0)
    assert found is not None and found.program_id == ids[7] and found.similarity > 0.99
    assert not db.is_novel(near.tolist(), 0)
    assert db.is_novel(vector(1000), 0)
    assert db.is_novel(near.tolist(), 1)  # other islands are not compared
    assert db.nearest([], 0) is None and db.is_novel([0.0] * 64, 0)


def test_the_index_follows_adds_reopening_and_migration(make_db: Factory) -> None:
    db = make_db(num_islands=2, migration_interval=0, migration_rate=1.0, seed=1)
    first = db.add(Program(code="a", embedding=vector(1), island_idx=0, combined_score=1.0))
    assert db.nearest(vector(2), 0) is not None  # loads the index
    second = db.add(Program(code="b", embedding=vector(2), island_idx=0))
    assert not db.is_novel(vector(2), 0)  # appended on add
    reopened = make_db(num_islands=2, migration_interval=0)
    assert reopened.nearest(vector(2), 0).program_id == second  # loaded from the database
    moves = db.migrate(1)
    assert [move.program_id for move in moves] == [second]  # the best (first) stays
    assert db.is_novel(vector(2), 0) and not db.is_novel(vector(2), 1)
    assert db.nearest(vector(1), 0).program_id == first
