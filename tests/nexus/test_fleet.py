"""Nexus keeps every instance's task events, once each, and each task at its newest."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from helpers import eventually
from nexus_support import RunningNexus
from singularity.nexus.fleet import Fleet
from singularity.shared_queue import Publisher, TaskEvent

START = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def event(task_id: int, event_id: int, state: str, **fields: Any) -> TaskEvent:
    return TaskEvent(
        instance=5,
        task_id=task_id,
        event_id=event_id,
        at=START + timedelta(seconds=event_id),
        state=state,
        message=f"{state} {event_id}",
        agent_id="coder-5",
        description="Document add()",
        repo="/srv/calc",
        **fields,
    )


async def test_events_are_kept_once_and_a_task_shows_its_newest(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool, nexus_db: AsyncConnectionPool
) -> None:
    task_id = uuid.uuid4().int % 10**12 + 1
    events = [
        event(task_id, 1, "queued"),
        event(task_id, 3, "reviewing"),
        event(task_id, 2, "working"),  # late: kept, but the task stays at event 3
        event(task_id, 3, "reviewing"),  # a copy: one effect
    ]
    await Publisher(bus_pool).send_batch("task_events", events)
    fleet = Fleet(nexus_db)

    async def kept() -> bool:
        return len(await fleet.events(5, task_id)) == 3

    await eventually(kept, 20)
    assert [row["state"] for row in await fleet.events(5, task_id)] == [
        "queued",
        "working",
        "reviewing",
    ]
    row = next(r for r in await fleet.tasks() if r["task_id"] == task_id)
    assert (row["state"], row["message"], row["events"]) == ("reviewing", "reviewing 3", 3)
    assert row["first_at"] == START + timedelta(seconds=1)
    await Publisher(bus_pool).send("task_events", event(task_id, 4, "done", outcome="applied"))

    async def done() -> bool:
        found = next(r for r in await fleet.tasks() if r["task_id"] == task_id)
        return found["state"] == "done"

    await eventually(done, 20)
    row = next(r for r in await fleet.tasks() if r["task_id"] == task_id)
    assert row["outcome"] == "applied" and row["events"] == 4


async def test_a_malformed_task_event_is_dead_lettered_with_its_reason(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool
) -> None:
    marker = uuid.uuid4().hex
    body = {"instance": 0, "task_id": 1, "event_id": 1, "at": "x", "state": "", "message": marker}
    await Publisher(bus_pool).send("task_events", body)

    async def lettered() -> bool:
        async with bus_pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT message->>'reason' FROM pgmq.q_task_events_dlq "
                    "WHERE message->'original'->>'message' = %s",
                    (marker,),
                )
            ).fetchone()
        return row is not None and "instance" in row[0] and "state" in row[0]

    await eventually(lettered, 20)
