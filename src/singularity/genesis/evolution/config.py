"""How an evolution run keeps its population: islands, archive, selection, migration."""

from __future__ import annotations

from dataclasses import dataclass

from singularity.errors import UsageError
from singularity.genesis.evolution.sampling import Strategy

__all__ = ["EvolutionConfig"]


@dataclass(frozen=True)
class EvolutionConfig:
    """How the population is kept: islands, archive, selection, migration, novelty."""

    num_islands: int = 4
    archive_size: int = 100
    strategy: Strategy = Strategy.POWER_LAW
    power_law_alpha: float = 1.0
    weighted_lambda: float = 10.0
    num_archive_inspirations: int = 2
    num_top_k_inspirations: int = 2
    migration_interval: int = 10  # generations between migrations; 0 turns migration off
    migration_rate: float = 0.1
    novelty_threshold: float = 0.95  # cosine similarity at or above which code is a duplicate
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.num_islands < 1 or self.archive_size < 1:
            raise UsageError("num_islands and archive_size must be at least 1")
        if not 0.0 <= self.migration_rate <= 1.0:
            raise UsageError("migration_rate must be between 0 and 1")
