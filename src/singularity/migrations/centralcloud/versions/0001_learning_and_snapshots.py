"""CentralCloud: what it learns from the bus's archives, and snapshots of its analytics.

`learning_cursors` holds, per archive table, the position (archived_at, msg_id) up to which
learning has read it (none yet: NULL), so that each archived message is learned from once.
`change_outcomes` holds one row per proposed change (an approval request, keyed by its request
key): which task type and model produced it, whether its tests passed, the human's decision.
`library_usage` counts, per language, the executed jobs whose code uses each library.
`analytics_snapshots` keeps every report `singularity analytics` computed.

Revision ID: 0001_learning_and_snapshots
Revises:
Create Date: 2026-12-10
"""

from alembic import op

revision = "0001_learning_and_snapshots"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE learning_cursors (
          archive TEXT PRIMARY KEY,
          archived_at TIMESTAMPTZ,
          msg_id BIGINT,
          messages BIGINT NOT NULL DEFAULT 0,
          updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );

        CREATE TABLE change_outcomes (
          request_key TEXT PRIMARY KEY,
          agent_id TEXT,
          task_type TEXT,
          model TEXT,
          llm_request_id TEXT,
          tests_passed BOOLEAN,
          success_rate DOUBLE PRECISION,
          recommendation TEXT,
          proposed_at TIMESTAMPTZ,
          approved BOOLEAN,
          decided_at TIMESTAMPTZ,
          learned_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX idx_change_outcomes_model ON change_outcomes (task_type, model)
          WHERE task_type IS NOT NULL AND model IS NOT NULL;

        CREATE TABLE library_usage (
          language TEXT NOT NULL,
          library TEXT NOT NULL,
          jobs BIGINT NOT NULL,
          first_seen_at TIMESTAMPTZ NOT NULL,
          last_seen_at TIMESTAMPTZ NOT NULL,
          PRIMARY KEY (language, library)
        );

        CREATE TABLE analytics_snapshots (
          id BIGSERIAL PRIMARY KEY,
          computed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
          since_days INTEGER NOT NULL,
          report JSONB NOT NULL
        );
        CREATE INDEX idx_analytics_snapshots_computed_at ON analytics_snapshots (computed_at);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE analytics_snapshots;
        DROP TABLE library_usage;
        DROP TABLE change_outcomes;
        DROP TABLE learning_cursors;
        """
    )
