"""Parent selection strategies: pure functions over an island's candidates.

- `power_law`: rank the candidates by score; rank r (0 = best) is chosen with probability
  proportional to (r + 1) ** -alpha.
- `weighted` (ShinkaEvolve's): a sigmoid of the score against the island's median, scaled
  by `lambda_`, times 1 / (1 + children) so that parents already mutated often rest.
- `hill_climbing`: always the island's best.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Candidate", "Strategy", "choose_parent", "rank_key"]


class Strategy(StrEnum):
    POWER_LAW = "power_law"
    WEIGHTED = "weighted"
    HILL_CLIMBING = "hill_climbing"


@dataclass(slots=True)
class Candidate:
    """What selection needs to know about a program (children grow as it is mutated)."""

    id: str
    score: float
    children: int = 0
    correct: bool = True
    island: int = 0


def rank_key(candidate: Candidate) -> tuple[float, str]:
    """Best first; ties broken by id, so that a seed gives the same answer on both backends."""
    return (-candidate.score, candidate.id)


def _power_law(ranked: Sequence[Candidate], rng: random.Random, alpha: float) -> Candidate:
    weights = [(rank + 1) ** -alpha for rank in range(len(ranked))]
    return rng.choices(ranked, weights=weights)[0]


def _weighted(ranked: Sequence[Candidate], rng: random.Random, lambda_: float) -> Candidate:
    scores = sorted(c.score for c in ranked)
    median = scores[len(scores) // 2]
    weights = []
    for candidate in ranked:
        x = max(-60.0, min(60.0, lambda_ * (candidate.score - median)))
        weights.append(1.0 / (1.0 + math.exp(-x)) / (1.0 + candidate.children))
    return rng.choices(ranked, weights=weights)[0]


def choose_parent(
    ranked: Sequence[Candidate],
    strategy: Strategy,
    rng: random.Random,
    *,
    alpha: float = 1.0,
    lambda_: float = 10.0,
) -> Candidate:
    """One parent among `ranked` (not empty, best first as by `rank_key`)."""
    if not ranked:
        raise ValueError("no candidate to choose a parent from")
    if strategy is Strategy.HILL_CLIMBING:
        return ranked[0]
    if strategy is Strategy.POWER_LAW:
        return _power_law(ranked, rng, alpha)
    return _weighted(ranked, rng, lambda_)
