"""Island migration: which programs move where.

Migrants are MOVED, not copied: a migrant's `island_idx` changes and an entry is appended
to its `migration_history`. Moving keeps the population size constant and can never create
a duplicate row. Each island with at least two programs sends
max(1, round(rate * size)) programs, chosen at random among all but its best (the best
stays, so no island loses its elite), to the next island of the ring (i -> i + 1 mod K).
All migrants are chosen before any moves, so a program moves at most once per round.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from singularity.genesis.evolution.sampling import Candidate

__all__ = ["Move", "plan_migration"]


@dataclass(frozen=True)
class Move:
    """One migrant: the program and its islands."""

    program_id: str
    source: int
    target: int


def plan_migration(
    islands: Mapping[int, Sequence[Candidate]],
    num_islands: int,
    rate: float,
    rng: random.Random,
) -> list[Move]:
    """The moves of one migration round (none with fewer than two islands)."""
    if num_islands < 2:
        return []
    moves: list[Move] = []
    for source in sorted(islands):
        members = sorted(islands[source], key=lambda c: (-c.score, c.id))
        if len(members) < 2:
            continue
        count = min(len(members) - 1, max(1, round(rate * len(members))))
        target = (source + 1) % num_islands
        for migrant in rng.sample(members[1:], count):
            moves.append(Move(migrant.id, source, target))
    return moves
