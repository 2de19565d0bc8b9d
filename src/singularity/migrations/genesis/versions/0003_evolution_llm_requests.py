"""Genesis evolution: the model calls of evolution runs, as asked and as answered.

One row per mutation asked of Nexus, keyed by the run and the step of the run it is for (the
generation, the island, the attempt), so that a run resumed after a crash finds the request it
made and the answer that arrived meanwhile instead of asking (and paying) twice. Its answer and
cost are recorded by whichever evolution process consumed it from `genesis_llm_results`.

Revision ID: 0003_evolution_llm_requests
Revises: 0002_evolution_programs
Create Date: 2026-12-02
"""

from alembic import op

revision = "0003_evolution_llm_requests"
down_revision = "0002_evolution_programs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE evolution_llm_requests (
          request_id TEXT PRIMARY KEY,
          run_id TEXT NOT NULL,
          step TEXT NOT NULL,
          body JSONB NOT NULL,
          context JSONB NOT NULL DEFAULT '{}'::jsonb,
          created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
          sent_at TIMESTAMPTZ,
          result JSONB,
          cost_usd DOUBLE PRECISION,
          answered_at TIMESTAMPTZ,
          UNIQUE (run_id, step)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE evolution_llm_requests")
