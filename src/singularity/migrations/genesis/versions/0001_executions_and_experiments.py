"""Genesis: execution results, sandbox history, experiments with their metrics, rollbacks.

`executions` holds one row per job request (its answer too, so a redelivered request is
answered from the record instead of running the code again); `sandbox_history` one row per
sandboxed step (check, lint, run, test, and an experiment's baseline and candidate runs);
`experiments` one row per experiment with the baseline recorded for rollback, and
`experiment_metrics` its figures by name; `rollback_history` every restore of a baseline.

Revision ID: 0001_executions_and_experiments
Revises:
Create Date: 2026-12-01
"""

from alembic import op

revision = "0001_executions_and_experiments"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE executions (
          request_id TEXT PRIMARY KEY,
          msg_id BIGINT,
          agent_id TEXT,
          language TEXT NOT NULL,
          mode TEXT NOT NULL,
          status TEXT NOT NULL,
          exit_code INTEGER,
          wall_ms REAL,
          cpu_ms REAL,
          max_rss_kb INTEGER,
          code_bytes INTEGER NOT NULL,
          output_bytes INTEGER NOT NULL,
          error_bytes INTEGER NOT NULL,
          truncated BOOLEAN NOT NULL DEFAULT false,
          unsafe BOOLEAN NOT NULL DEFAULT false,
          reply_to TEXT NOT NULL,
          reply JSONB NOT NULL,
          received_at TIMESTAMPTZ NOT NULL,
          completed_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX idx_executions_completed_at ON executions (completed_at);
        CREATE INDEX idx_executions_status ON executions (status, completed_at);

        CREATE TABLE experiments (
          id TEXT PRIMARY KEY,
          agent_id TEXT,
          repo TEXT NOT NULL,
          diff TEXT NOT NULL,
          test_command TEXT NOT NULL,
          status TEXT NOT NULL,
          recommendation TEXT
            CHECK (recommendation IN ('merge', 'merge_with_adaptations', 'rollback')),
          rule INTEGER,
          success_rate DOUBLE PRECISION,
          regression DOUBLE PRECISION,
          llm_reduction DOUBLE PRECISION NOT NULL DEFAULT 0,
          outcome JSONB NOT NULL,
          error TEXT,
          reply_to TEXT,
          reply JSONB,
          baseline JSONB,
          applied_at TIMESTAMPTZ,
          rolled_back_at TIMESTAMPTZ,
          created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
          completed_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX idx_experiments_created_at ON experiments (created_at);

        CREATE TABLE experiment_metrics (
          experiment_id TEXT NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
          name TEXT NOT NULL,
          value DOUBLE PRECISION NOT NULL,
          PRIMARY KEY (experiment_id, name)
        );

        CREATE TABLE sandbox_history (
          id BIGSERIAL PRIMARY KEY,
          execution_id TEXT REFERENCES executions (request_id) ON DELETE CASCADE,
          experiment_id TEXT REFERENCES experiments (id) ON DELETE CASCADE,
          step TEXT NOT NULL,
          status TEXT NOT NULL,
          exit_code INTEGER,
          wall_ms REAL,
          cpu_ms REAL,
          max_rss_kb INTEGER,
          unsafe BOOLEAN NOT NULL DEFAULT false,
          created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
          CHECK (num_nonnulls(execution_id, experiment_id) = 1)
        );
        CREATE INDEX idx_sandbox_history_execution ON sandbox_history (execution_id);
        CREATE INDEX idx_sandbox_history_experiment ON sandbox_history (experiment_id);
        CREATE INDEX idx_sandbox_history_created_at ON sandbox_history (created_at);

        CREATE TABLE rollback_history (
          id BIGSERIAL PRIMARY KEY,
          experiment_id TEXT NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
          reason TEXT NOT NULL,
          restored_files JSONB NOT NULL,
          created_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX idx_rollback_history_experiment ON rollback_history (experiment_id);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE rollback_history;
        DROP TABLE sandbox_history;
        DROP TABLE experiment_metrics;
        DROP TABLE experiments;
        DROP TABLE executions;
        """
    )
