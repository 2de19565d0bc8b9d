"""The program database's storage, on both backends: records, lineage, archive, best."""

from __future__ import annotations

import random

import pytest

from singularity.errors import NotFound, UsageError
from singularity.genesis.evolution import AsyncProgramDatabase, Program, ProgramDatabase


def program(score: float = 0.5, **fields: object) -> Program:
    return Program(code=f"print({score})", combined_score=score, correct=True, **fields)  # type: ignore[arg-type]


def test_a_program_comes_back_exactly_as_stored(db: ProgramDatabase) -> None:
    stored = Program(
        code="def f():\n    return 'é'\n",
        language="python",
        generation=3,
        timestamp=1796176670.9952648,
        code_diff="--- a\n+++ b\n",
        combined_score=0.125,
        public_metrics={"runtime_s": 1.5, "nested": {"list": [1, 2.5, None, True]}},
        private_metrics={"hidden": -0.1},
        text_feedback="fine",
        complexity=12.75,
        embedding=[0.1, -0.2, 0.30000000000000004],
        correct=True,
        metadata={"model": "alpha", "patch": "diff"},
        island_idx=1,
    )
    assert db.add(stored) == stored.id
    assert db.get(stored.id) == stored
    with pytest.raises(NotFound):
        db.get("missing")


def test_children_are_counted_and_land_on_their_parents_island(db: ProgramDatabase) -> None:
    root = db.add(program(island_idx=1))
    first = db.add(program(parent_id=root, generation=1))
    db.add(program(parent_id=root, generation=1))
    db.add(program(parent_id=first, generation=2))
    assert db.get(root).children_count == 2
    assert db.get(first).children_count == 1
    assert {p.island_idx for p in db.by_generation(1) + db.by_generation(2)} == {1}


def test_programs_without_parent_fill_the_smallest_island(db: ProgramDatabase) -> None:
    islands = [db.get(db.add(program())).island_idx for _ in range(4)]
    assert islands == [0, 1, 0, 1]
    assert db.island_sizes() == {0: 2, 1: 2}


def test_bad_lineage_and_islands_are_refused(db: ProgramDatabase) -> None:
    with pytest.raises(NotFound, match="parent"):
        db.add(program(parent_id="nobody"))
    with pytest.raises(UsageError, match="island 2"):
        db.add(program(island_idx=2))
    kept = db.add(program(island_idx=0))
    with pytest.raises(UsageError, match="already exists"):
        db.add(program(id=kept))
    with pytest.raises(UsageError, match="JSON"):
        db.add(program(public_metrics={"x": float("nan")}))
    with pytest.raises(ValueError):
        program(float("inf"))
    assert db.count() == 1


def test_the_best_score_never_decreases(db: ProgramDatabase) -> None:
    rng = random.Random(3)
    best = None
    for generation in range(40):
        correct = rng.random() < 0.7
        db.add(
            Program(code="x", generation=generation, combined_score=rng.random(), correct=correct)
        )
        current = db.best()
        if best is not None:
            assert current is not None and current.combined_score >= best
        best = current.combined_score if current else None
        if current is not None:
            assert db.get_metadata("best_program_id") == current.id
    assert db.get_metadata("last_generation") == 39


def test_the_archive_keeps_the_fittest_within_its_cap(db: ProgramDatabase) -> None:
    rng = random.Random(5)
    added = []
    for _ in range(30):
        score = rng.random()
        added.append((score, db.add(program(score))))
        assert len(db.archive_ids()) <= 5
    db.add(Program(code="wrong", combined_score=2.0, correct=False))
    fittest = [pid for _, pid in sorted(added, reverse=True)[:5]]
    assert db.archive_ids() == fittest


def test_top_k_and_generations_are_ordered_best_first(db: ProgramDatabase) -> None:
    for score in (0.2, 0.9, 0.5):
        db.add(program(score, generation=1))
    db.add(Program(code="bad", combined_score=5.0, generation=1, correct=False))
    assert [p.combined_score for p in db.top_k(2)] == [0.9, 0.5]
    assert [p.combined_score for p in db.by_generation(1)] == [5.0, 0.9, 0.5, 0.2]
    assert db.by_generation(2) == []


def test_metadata_holds_any_json(db: ProgramDatabase) -> None:
    db.set_metadata("config", {"islands": 2, "models": ["a", "b"]})
    db.set_metadata("config", {"islands": 3})
    assert db.get_metadata("config") == {"islands": 3}
    assert db.get_metadata("absent", "default") == "default"


async def test_the_async_wrapper_runs_the_same_calls(db: ProgramDatabase) -> None:
    adb = AsyncProgramDatabase(db)
    root = await adb.add(program(0.3))
    await adb.add(program(0.6, parent_id=root))
    chosen = await adb.sample()
    assert chosen.parent.id in {p.id for p in await adb.top_k(5)}
    assert (await adb.best()) == (await adb.top_k(1))[0]
    assert await adb.count() == 2
