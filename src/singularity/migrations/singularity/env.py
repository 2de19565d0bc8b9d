"""Alembic environment; the shared runner lives in singularity.postgres.migrations."""

from alembic import context

from singularity.postgres.migrations import run_environment

run_environment(context)
