"""Nexus: every Singularity instance's tasks, as their events arrive on the bus.

`fleet_task_events` keeps each event once (by instance, task and event id); `fleet_tasks` one
row per task with its latest state, outcome and message (from the newest event seen), for the
views of the fleet. Nexus never reads a Singularity database: this is what reaches it.

Revision ID: 0003_fleet_tasks
Revises: 0002_router_log_and_hitl_state
Create Date: 2026-12-07
"""

from alembic import op

revision = "0003_fleet_tasks"
down_revision = "0002_router_log_and_hitl_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE fleet_task_events (
          instance INTEGER NOT NULL,
          task_id BIGINT NOT NULL,
          event_id BIGINT NOT NULL,
          at TIMESTAMPTZ NOT NULL,
          state TEXT NOT NULL,
          message TEXT NOT NULL,
          received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
          PRIMARY KEY (instance, task_id, event_id)
        );

        CREATE TABLE fleet_tasks (
          instance INTEGER NOT NULL,
          task_id BIGINT NOT NULL,
          agent_id TEXT,
          description TEXT,
          repo TEXT,
          state TEXT NOT NULL,
          outcome TEXT,
          message TEXT NOT NULL,
          last_event_id BIGINT NOT NULL,
          first_at TIMESTAMPTZ NOT NULL,
          last_at TIMESTAMPTZ NOT NULL,
          events INTEGER NOT NULL DEFAULT 1,
          PRIMARY KEY (instance, task_id)
        );
        CREATE INDEX fleet_tasks_last_at ON fleet_tasks (last_at DESC);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE fleet_tasks, fleet_task_events")
