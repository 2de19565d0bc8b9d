"""The LLM request log, and the state Nexus keeps beside the design's HITL tables.

The design's tables keep exactly their columns. What a decision needs beyond them (the asker's
request id and reply queue, a deadline, the status, the reason, who decided, whether the answer
went out) lives in `approval_state` and `question_state`, one row per request. Changes of state
are announced on the `nexus_hitl` channel, so every Nexus process pushes them to its browsers,
whichever process (or command) made the change.

Revision ID: 0002_router_log_and_hitl_state
Revises: 0001_hitl_tables
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002_router_log_and_hitl_state"
down_revision = "0001_hitl_tables"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE approval_state (
          id UUID PRIMARY KEY REFERENCES approval_requests (id) ON DELETE CASCADE,
          request_id TEXT,
          reply_to TEXT NOT NULL,
          deadline TIMESTAMPTZ,
          status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
          reason TEXT,
          decided_by TEXT,
          published_at TIMESTAMPTZ
        );
        CREATE INDEX idx_approval_state_pending ON approval_state (deadline)
          WHERE status = 'pending';
        CREATE INDEX idx_approval_state_unpublished ON approval_state (id)
          WHERE status <> 'pending' AND published_at IS NULL;

        CREATE TABLE question_state (
          id UUID PRIMARY KEY REFERENCES question_requests (id) ON DELETE CASCADE,
          request_id TEXT,
          reply_to TEXT NOT NULL,
          deadline TIMESTAMPTZ,
          status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'answered', 'expired')),
          decided_by TEXT,
          published_at TIMESTAMPTZ
        );
        CREATE INDEX idx_question_state_pending ON question_state (deadline)
          WHERE status = 'pending';
        CREATE INDEX idx_question_state_unpublished ON question_state (id)
          WHERE status <> 'pending' AND published_at IS NULL;

        CREATE INDEX idx_hitl_metrics_created_at ON hitl_metrics (created_at);

        CREATE FUNCTION hitl_announce() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('nexus_hitl', TG_ARGV[0] || ':' || NEW.id::text);
            RETURN NULL;
        END
        $$;
        CREATE TRIGGER approval_state_announce
          AFTER INSERT OR UPDATE OF status ON approval_state
          FOR EACH ROW EXECUTE FUNCTION hitl_announce('approval');
        CREATE TRIGGER question_state_announce
          AFTER INSERT OR UPDATE OF status ON question_state
          FOR EACH ROW EXECUTE FUNCTION hitl_announce('question');

        CREATE TABLE llm_requests (
          request_id TEXT PRIMARY KEY,
          msg_id BIGINT,
          agent_id TEXT NOT NULL,
          task_type TEXT NOT NULL,
          tier TEXT NOT NULL,
          tier_reason TEXT NOT NULL,
          outcome TEXT NOT NULL,
          model TEXT,
          attempts JSONB NOT NULL DEFAULT '[]',
          prompt_tokens INTEGER,
          completion_tokens INTEGER,
          cost_usd NUMERIC(16, 8),
          provider_ms REAL,
          overhead_ms REAL,
          reply_to TEXT NOT NULL,
          reply JSONB NOT NULL,
          received_at TIMESTAMPTZ NOT NULL,
          completed_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX idx_llm_requests_completed_at ON llm_requests (completed_at);
        CREATE INDEX idx_llm_requests_agent_day ON llm_requests (agent_id, completed_at);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE llm_requests;
        DROP TABLE question_state;
        DROP TABLE approval_state;
        DROP FUNCTION hitl_announce();
        DROP INDEX idx_hitl_metrics_created_at;
        """
    )
