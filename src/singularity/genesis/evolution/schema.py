"""The one definition of the program database's tables, shared by SQLite and PostgreSQL.

The Alembic migration `0002_evolution_programs` creates the same tables on the platform's
genesis database; a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    inspect,
)
from sqlalchemy.engine import Engine

from singularity.errors import SingularityError
from singularity.genesis.evolution.types import JSONValue

__all__ = [
    "TABLES",
    "archive",
    "create_schema",
    "metadata",
    "metadata_store",
    "programs",
    "require_schema",
]

metadata = MetaData()

# Small, often-read columns first: SQLite stores a row's columns in order, and reading a
# column after a large value (code, embedding) means walking its overflow pages.
programs = Table(
    "programs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("parent_id", Text),
    Column("generation", Integer, nullable=False),
    Column("timestamp", Double, nullable=False),
    Column("combined_score", Double, nullable=False),
    Column("complexity", Double, nullable=False),
    Column("correct", Boolean, nullable=False),
    Column("children_count", Integer, nullable=False),
    Column("island_idx", Integer, nullable=False),
    Column("language", Text, nullable=False),
    Column("code", Text, nullable=False),
    Column("code_diff", Text),
    Column("text_feedback", Text, nullable=False),
    Column("archive_inspiration_ids", JSONValue, nullable=False),
    Column("top_k_inspiration_ids", JSONValue, nullable=False),
    Column("public_metrics", JSONValue, nullable=False),
    Column("private_metrics", JSONValue, nullable=False),
    Column("metadata", JSONValue, nullable=False),
    Column("migration_history", JSONValue, nullable=False),
    Column("embedding", JSONValue, nullable=False),
    Index("ix_programs_generation", "generation"),
    Index("ix_programs_timestamp", "timestamp"),
    Index("ix_programs_complexity", "complexity"),
    Index("ix_programs_parent_id", "parent_id"),
    Index("ix_programs_island_idx", "island_idx"),
    Index("ix_programs_correct", "correct"),
    Index("ix_programs_combined_score", "combined_score"),
)

archive = Table(
    "archive",
    metadata,
    Column("program_id", Text, ForeignKey("programs.id", ondelete="CASCADE"), primary_key=True),
)

metadata_store = Table(
    "metadata_store",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", JSONValue, nullable=False),
)

# In foreign-key order (a copy inserts them in this order).
TABLES = (programs, archive, metadata_store)


def create_schema(engine: Engine) -> None:
    """Create the tables that are missing (a SQLite file or a standalone PostgreSQL)."""
    metadata.create_all(engine, checkfirst=True)


def require_schema(engine: Engine) -> None:
    """Fail with one line if the platform's database lacks the migrated tables."""
    present = set(inspect(engine).get_table_names())
    missing = [table.name for table in TABLES if table.name not in present]
    if missing:
        raise SingularityError(
            f"the genesis database has no table {', '.join(missing)}; run `singularity db migrate`"
        )
