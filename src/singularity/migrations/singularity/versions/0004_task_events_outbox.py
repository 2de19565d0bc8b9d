"""Singularity: task events as an outbox for the bus.

Every task event is sent on `task_events` (for Nexus's views of the fleet) by the Singularity
service's relay, in order; `sent_at` says which have gone. An event recorded by a process
that stops before its relay runs is sent by the next relay (of any process of this
instance): none is lost, and a copy sent twice has the same key and one effect.

Revision ID: 0004_task_events_outbox
Revises: 0003_task_trajectory
Create Date: 2026-12-07
"""

from alembic import op

revision = "0004_task_events_outbox"
down_revision = "0003_task_trajectory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE task_events ADD COLUMN sent_at TIMESTAMPTZ;
        CREATE INDEX task_events_unsent ON task_events (id) WHERE sent_at IS NULL;
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX task_events_unsent; ALTER TABLE task_events DROP COLUMN sent_at")
