"""Singularity: a task's trajectory, every step of its agent loop.

`task_trajectory` holds one row per model call and per tool call of a task's agent loop, in
the order they happened, under a key the loop gives each step ("r0-3-model", "r0-3-tool-1":
revision, turn, what). The model's answers are recorded as requests (`pending_requests`);
a tool call's output is recorded here only, so a loop resumed after a crash takes the output
it recorded instead of running the tool again.

Revision ID: 0003_task_trajectory
Revises: 0002_agents_and_tasks
Create Date: 2026-12-07
"""

from alembic import op

revision = "0003_task_trajectory"
down_revision = "0002_agents_and_tasks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE task_trajectory (
          id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          task_id BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
          key TEXT NOT NULL,
          kind TEXT NOT NULL CHECK (kind IN ('model', 'tool')),
          name TEXT NOT NULL,
          input JSONB NOT NULL DEFAULT '{}',
          output JSONB NOT NULL DEFAULT '{}',
          ok BOOLEAN NOT NULL DEFAULT true,
          tokens INTEGER NOT NULL DEFAULT 0,
          cost_usd NUMERIC(12, 6),
          wall_ms REAL,
          at TIMESTAMPTZ NOT NULL DEFAULT now(),
          UNIQUE (task_id, key)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE task_trajectory")
