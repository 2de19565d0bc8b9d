"""The human-in-the-loop tables of the design documents, column for column.

Revision ID: 0001_hitl_tables
Revises:
Create Date: 2026-11-22
"""

from alembic import op

revision = "0001_hitl_tables"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE approval_requests (
          id UUID PRIMARY KEY,
          file_path TEXT NOT NULL,
          diff TEXT NOT NULL,
          description TEXT,
          agent_id TEXT NOT NULL,
          timestamp TIMESTAMP DEFAULT NOW(),
          approved BOOLEAN,
          approved_at TIMESTAMP,
          created_at TIMESTAMP DEFAULT NOW()
        );
        CREATE INDEX idx_approval_requests_agent_id ON approval_requests(agent_id);
        CREATE INDEX idx_approval_requests_timestamp ON approval_requests(timestamp);

        CREATE TABLE question_requests (
          id UUID PRIMARY KEY,
          question TEXT NOT NULL,
          context JSONB,
          agent_id TEXT NOT NULL,
          timestamp TIMESTAMP DEFAULT NOW(),
          response TEXT,
          response_at TIMESTAMP,
          created_at TIMESTAMP DEFAULT NOW()
        );
        CREATE INDEX idx_question_requests_agent_id ON question_requests(agent_id);
        CREATE INDEX idx_question_requests_timestamp ON question_requests(timestamp);

        CREATE TABLE hitl_metrics (
          id SERIAL PRIMARY KEY,
          request_type VARCHAR(50) NOT NULL,
          request_id UUID NOT NULL,
          response_time_ms INTEGER,
          user_id TEXT,
          created_at TIMESTAMP DEFAULT NOW()
        );
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE hitl_metrics; DROP TABLE question_requests; DROP TABLE approval_requests"
    )
