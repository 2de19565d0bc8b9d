"""Parent and inspiration sampling, on both backends."""

from __future__ import annotations

import collections
from collections.abc import Callable

import pytest

from singularity.errors import NotFound
from singularity.genesis.evolution import Program, ProgramDatabase, Strategy

Factory = Callable[..., ProgramDatabase]


def fill(db: ProgramDatabase, per_island: int = 8) -> dict[int, list[str]]:
    """Programs with distinct scores on both islands; ids by island."""
    ids: dict[int, list[str]] = {0: [], 1: []}
    for island in (0, 1):
        for i in range(per_island):
            ids[island].append(
                db.add(
                    Program(
                        id=f"p{island}-{i:02d}",
                        code="x",
                        combined_score=island + i / 10,
                        correct=i != 3,  # one incorrect program per island: never a parent
                        island_idx=island,
                    )
                )
            )
    return ids


@pytest.mark.parametrize("strategy", list(Strategy))
def test_parents_and_inspirations_come_from_the_island(
    db: ProgramDatabase, strategy: Strategy
) -> None:
    ids = fill(db)
    for island in (0, 1):
        for _ in range(15):
            chosen = db.sample(island, strategy)
            everyone = [chosen.parent, *chosen.archive_inspirations, *chosen.top_k_inspirations]
            assert {p.island_idx for p in everyone} == {island}
            assert chosen.parent.correct
            assert len({p.id for p in everyone}) == len(everyone)  # the parent is not its muse
            assert set(db.archive_ids()) >= {p.id for p in chosen.archive_inspirations}
            assert len(chosen.top_k_inspirations) == 2
            assert all(p.id in ids[island] for p in everyone)


def test_hill_climbing_takes_the_islands_best(db: ProgramDatabase) -> None:
    fill(db)
    assert db.sample(0, Strategy.HILL_CLIMBING).parent.id == "p0-07"
    assert db.sample(1, Strategy.HILL_CLIMBING).parent.id == "p1-07"


def test_power_law_favours_the_best(db: ProgramDatabase) -> None:
    fill(db)
    picks = collections.Counter(db.sample(0, Strategy.POWER_LAW).parent.id for _ in range(300))
    assert picks.most_common(1)[0][0] == "p0-07"
    assert len(picks) > 3  # and still explores


def test_weighted_rests_parents_with_many_children(db: ProgramDatabase) -> None:
    fill(db)
    for _ in range(30):
        db.add(Program(code="child", parent_id="p0-07", combined_score=0.0))
    picks = collections.Counter(db.sample(0, Strategy.WEIGHTED).parent.id for _ in range(300))
    assert picks["p0-07"] < picks["p0-06"]


def test_a_seed_makes_sampling_repeatable(make_db: Factory) -> None:
    first = make_db(num_islands=2, migration_interval=0, seed=11)
    fill(first)
    again = make_db(num_islands=2, migration_interval=0, seed=11)
    sequence = [first.sample().parent.id for _ in range(20)]
    assert [again.sample().parent.id for _ in range(20)] == sequence


def test_an_empty_database_or_island_has_nothing_to_sample(db: ProgramDatabase) -> None:
    with pytest.raises(NotFound):
        db.sample()
    db.add(Program(code="x", island_idx=0))
    with pytest.raises(NotFound):
        db.sample(1)
    assert db.sample().parent.island_idx == 0  # an island without correct programs still evolves


def test_another_writers_programs_are_seen_after_refresh(make_db: Factory) -> None:
    db = make_db(num_islands=2, migration_interval=0, seed=1)
    db.add(Program(code="x", island_idx=0, correct=True))
    db.sample(0)  # loads the in-memory index
    other = make_db(num_islands=2, migration_interval=0)
    added = other.add(Program(code="y", island_idx=1, correct=True))
    with pytest.raises(NotFound):
        db.sample(1)
    db.refresh()
    assert db.sample(1).parent.id == added
