"""Singularity: agents, their tasks step by step, pending requests, the local LLM log.

`agents` holds one row per agent instance (a kind such as coder, and an id); `tasks` one row
per task, with the state machine's current state and what each finished step produced
(`data`), and a lease so that exactly one runner works on a task and another resumes it
after a crash; `task_events` the history shown as live progress. `pending_requests` records
every request sent on the bus before it is sent, so that a result arriving after a restart is
matched to its step; `llm_calls` is the local log of model calls with tokens and cost, which
`agent_costs` sums per agent.

Revision ID: 0002_agents_and_tasks
Revises: 0001_knowledge_artifacts
Create Date: 2026-12-02
"""

from alembic import op

revision = "0002_agents_and_tasks"
down_revision = "0001_knowledge_artifacts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE agents (
          id TEXT PRIMARY KEY,
          kind TEXT NOT NULL,
          created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );

        CREATE TABLE tasks (
          id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          agent_id TEXT NOT NULL REFERENCES agents (id),
          description TEXT NOT NULL,
          repo TEXT NOT NULL,
          test_command TEXT NOT NULL,
          state TEXT NOT NULL DEFAULT 'queued',
          data JSONB NOT NULL DEFAULT '{}',
          outcome TEXT,
          error TEXT,
          runner TEXT,
          lease_until TIMESTAMPTZ,
          created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
          updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
          finished_at TIMESTAMPTZ
        );
        CREATE INDEX tasks_open ON tasks (lease_until) WHERE finished_at IS NULL;
        CREATE INDEX tasks_agent ON tasks (agent_id);

        CREATE TABLE task_events (
          id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          task_id BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
          at TIMESTAMPTZ NOT NULL DEFAULT now(),
          state TEXT NOT NULL,
          message TEXT NOT NULL
        );
        CREATE INDEX task_events_task ON task_events (task_id, id);

        CREATE TABLE pending_requests (
          request_id TEXT PRIMARY KEY,
          task_id BIGINT REFERENCES tasks (id) ON DELETE CASCADE,
          step TEXT,
          kind TEXT NOT NULL,
          queue TEXT NOT NULL,
          reply_to TEXT NOT NULL,
          body JSONB NOT NULL,
          created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
          sent_at TIMESTAMPTZ,
          deadline TIMESTAMPTZ,
          answered_at TIMESTAMPTZ,
          result JSONB,
          UNIQUE (task_id, step)
        );
        CREATE INDEX pending_requests_waiting ON pending_requests (created_at)
          WHERE answered_at IS NULL;

        CREATE TABLE llm_calls (
          request_id TEXT PRIMARY KEY,
          agent_id TEXT NOT NULL,
          task_id BIGINT REFERENCES tasks (id) ON DELETE SET NULL,
          task_type TEXT NOT NULL,
          model TEXT,
          tier TEXT,
          prompt_tokens INTEGER NOT NULL DEFAULT 0,
          completion_tokens INTEGER NOT NULL DEFAULT 0,
          cost_usd DOUBLE PRECISION,
          error TEXT,
          requested_at TIMESTAMPTZ NOT NULL,
          answered_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX llm_calls_agent ON llm_calls (agent_id);

        CREATE VIEW agent_costs AS
          SELECT agent_id,
                 count(*) AS calls,
                 count(error) AS errors,
                 sum(prompt_tokens)::bigint AS prompt_tokens,
                 sum(completion_tokens)::bigint AS completion_tokens,
                 sum(cost_usd) AS cost_usd,
                 count(*) FILTER (WHERE cost_usd IS NULL AND error IS NULL) AS unpriced_calls
          FROM llm_calls GROUP BY agent_id;
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP VIEW agent_costs; DROP TABLE llm_calls, pending_requests, task_events, tasks, agents"
    )
