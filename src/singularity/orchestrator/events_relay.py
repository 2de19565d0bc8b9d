"""The relay of task events to the bus: what each task did, for Nexus's views of the fleet.

Task events are written to the instance's database with the step they record (the outbox);
the relay sends those not sent yet on `task_events`, oldest first, and marks them sent. Nexus
keeps them (see `nexus/fleet.py`), so that its pages can show every instance's tasks without
reading any Singularity database.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
import structlog

from singularity.orchestrator.store import SingularityStore
from singularity.postgres.connect import describe_error
from singularity.shared_queue import Publisher, TaskEvent

__all__ = ["QUEUE", "relay_once", "relay_task_events"]

log = structlog.get_logger(__name__)

QUEUE = "task_events"
_EVERY_S = 0.5
_BATCH = 200


async def relay_once(store: SingularityStore, publisher: Publisher, instance: int) -> int:
    """Send the oldest unsent events (up to a batch); how many were sent."""

    async def send(rows: list[dict[str, Any]]) -> None:
        events = [_event(row, instance) for row in rows]
        await publisher.send_batch(QUEUE, events)

    return await store.relay_events(send, limit=_BATCH)


async def relay_task_events(
    store: SingularityStore, publisher: Publisher, instance: int, stop: asyncio.Event
) -> None:
    """Relay events until `stop`: at once while there are more, else every half second."""
    while not stop.is_set():
        try:
            sent = await relay_once(store, publisher, instance)
        except psycopg.Error as exc:
            log.warning("task_events_relay_failed", error=describe_error(exc))
            sent = 0
        if sent < _BATCH:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _EVERY_S)


def _event(row: dict[str, Any], instance: int) -> TaskEvent:
    return TaskEvent(
        instance=instance,
        task_id=row["task_id"],
        event_id=row["id"],
        at=row["at"],
        state=row["state"],
        message=row["message"][:8192],
        agent_id=row["agent_id"],
        description=row["description"][:8192],
        repo=row["repo"][:4096],
        outcome=row["outcome"],
    )
