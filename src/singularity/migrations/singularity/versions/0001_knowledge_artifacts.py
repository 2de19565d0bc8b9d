"""Singularity's knowledge artifacts: what its agents look up when they work on a task.

One row per (artifact_type, artifact_id, version). `content` is the artifact as JSON,
`content_raw` the text it was written as; `search_vector` is a generated full-text vector
('english') over the type, the id (weight A) and every string of the content (weight B),
with a GIN index.

`embedding` exists only when pgvector is installed in the database (`singularity db init`
installs it as the administrator before migrations run). It is an unconstrained `vector`:
embedding models differ in dimensions, so each row records the model and the dimension count
it was embedded with, and a search compares only vectors of the model it queries with. On a
server without pgvector the column is left out and knowledge search is full-text only.

Revision ID: 0001_knowledge_artifacts
Revises:
Create Date: 2026-12-08
"""

from alembic import op

revision = "0001_knowledge_artifacts"
down_revision = None
branch_labels = None
depends_on = None


def _vector_installed() -> bool:
    bind = op.get_bind()
    found = bind.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
    return found.first() is not None


def upgrade() -> None:
    # The one piece put into the statement is this fixed column text.
    embedding = "embedding vector," if _vector_installed() else ""
    op.execute(
        f"""
        CREATE TABLE knowledge_artifacts (
          id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          artifact_type TEXT NOT NULL CHECK (artifact_type <> ''),
          artifact_id TEXT NOT NULL CHECK (artifact_id <> ''),
          version TEXT NOT NULL DEFAULT '1' CHECK (version <> ''),
          content_raw TEXT NOT NULL,
          content JSONB NOT NULL,
          {embedding}
          embedding_model TEXT,
          embedding_dimensions INTEGER CHECK (embedding_dimensions > 0),
          usage_count INTEGER NOT NULL DEFAULT 0 CHECK (usage_count >= 0),
          success_count INTEGER NOT NULL DEFAULT 0
            CHECK (success_count >= 0 AND success_count <= usage_count),
          created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
          updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
          last_used_at TIMESTAMPTZ,
          search_vector TSVECTOR GENERATED ALWAYS AS (
            setweight(to_tsvector('english', artifact_type || ' ' || artifact_id), 'A')
            || setweight(jsonb_to_tsvector('english', content, '["string"]'), 'B')
          ) STORED,
          UNIQUE (artifact_type, artifact_id, version)
        );
        CREATE INDEX idx_knowledge_artifacts_search ON knowledge_artifacts
          USING GIN (search_vector);
        CREATE INDEX idx_knowledge_artifacts_type ON knowledge_artifacts (artifact_type);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE knowledge_artifacts;")
