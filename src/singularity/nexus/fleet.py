"""The fleet as Nexus sees it: every Singularity instance's tasks, from `task_events`.

Each event is kept once (a copy sent twice has one effect), and each task's row follows its
newest event, so the views of the fleet read Nexus's own database only.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from singularity.nexus.sql import QUERIES
from singularity.shared_queue import Delivery, TaskEvent

__all__ = ["Fleet"]


class Fleet:
    """The `task_events` consumer's handler, and the queries of the fleet's views."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def take_event(self, delivery: Delivery[TaskEvent]) -> None:
        event = delivery.message
        params = event.model_dump(
            include={
                "instance",
                "task_id",
                "event_id",
                "at",
                "state",
                "message",
                "agent_id",
                "description",
                "repo",
                "outcome",
            }
        )
        async with self._pool.connection() as conn:
            await conn.execute(QUERIES["fleet_event_insert"], params)

    async def tasks(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest tasks of every instance, the most recently active first."""
        return await self._rows("fleet_tasks", {"limit": limit})

    async def events(self, instance: int, task_id: int) -> list[dict[str, Any]]:
        """One task's events, in order."""
        return await self._rows("fleet_task_events", {"instance": instance, "task_id": task_id})

    async def _rows(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(QUERIES[query], params)
            return await cursor.fetchall()
