"""Genesis evolution: the program database (population, islands, archive, novelty).

One API over SQLite and PostgreSQL (SQLAlchemy Core); see docs/genesis.md, "Evolution:
the program database".
"""

from singularity.genesis.evolution.aio import AsyncProgramDatabase
from singularity.genesis.evolution.config import EvolutionConfig
from singularity.genesis.evolution.database import ProgramDatabase, open_program_database
from singularity.genesis.evolution.engine import open_engine, resolve_target
from singularity.genesis.evolution.islands import Move
from singularity.genesis.evolution.sampling import Strategy
from singularity.genesis.evolution.transfer import TableReport, copy_run
from singularity.genesis.evolution.types import Neighbour, Program, Sample

__all__ = [
    "AsyncProgramDatabase",
    "EvolutionConfig",
    "Move",
    "Neighbour",
    "Program",
    "ProgramDatabase",
    "Sample",
    "Strategy",
    "TableReport",
    "copy_run",
    "open_engine",
    "open_program_database",
    "resolve_target",
]
