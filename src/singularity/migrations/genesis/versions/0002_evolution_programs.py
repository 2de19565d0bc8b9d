"""Genesis evolution: the program database of evolution runs.

`programs` holds every program of the population (its code, lineage, scores, embedding,
island and migrations), `archive` the elite programs shown as inspiration, and
`metadata_store` a run's key/value facts (last generation, best program). The tables agree
with singularity.genesis.evolution.schema, which creates them on SQLite and on standalone
PostgreSQL databases; a test compares the two.

Revision ID: 0002_evolution_programs
Revises: 0001_executions_and_experiments
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002_evolution_programs"
down_revision = "0001_executions_and_experiments"
branch_labels = None
depends_on = None

INDEXED = (
    "generation",
    "timestamp",
    "complexity",
    "parent_id",
    "island_idx",
    "correct",
    "combined_score",
)


def upgrade() -> None:
    op.create_table(
        "programs",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("parent_id", sa.Text()),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("timestamp", sa.Double(), nullable=False),
        sa.Column("combined_score", sa.Double(), nullable=False),
        sa.Column("complexity", sa.Double(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("children_count", sa.Integer(), nullable=False),
        sa.Column("island_idx", sa.Integer(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("code_diff", sa.Text()),
        sa.Column("text_feedback", sa.Text(), nullable=False),
        sa.Column("archive_inspiration_ids", JSONB(), nullable=False),
        sa.Column("top_k_inspiration_ids", JSONB(), nullable=False),
        sa.Column("public_metrics", JSONB(), nullable=False),
        sa.Column("private_metrics", JSONB(), nullable=False),
        sa.Column("metadata", JSONB(), nullable=False),
        sa.Column("migration_history", JSONB(), nullable=False),
        sa.Column("embedding", JSONB(), nullable=False),
    )
    for column in INDEXED:
        op.create_index(f"ix_programs_{column}", "programs", [column])
    op.create_table(
        "archive",
        sa.Column(
            "program_id",
            sa.Text(),
            sa.ForeignKey("programs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_table(
        "metadata_store",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", JSONB(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("metadata_store")
    op.drop_table("archive")
    op.drop_table("programs")
