"""Task events reach the bus from the instance's outbox, each once, in order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from singularity.orchestrator.events_relay import relay_once
from singularity.orchestrator.platform import Connected


async def _sent(bus_pool: AsyncConnectionPool, instance: int, task_id: int) -> list[dict]:
    async with bus_pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT message FROM pgmq.q_task_events "
                "WHERE (message->>'instance')::int = %s AND (message->>'task_id')::bigint = %s "
                "ORDER BY msg_id",
                (instance, task_id),
            )
        ).fetchall()
    return [row[0] for row in rows]


async def test_each_event_is_sent_once_in_order_with_its_tasks_fields(
    connected: Connected, bus_pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    store = connected.store
    await store.ensure_agent("coder-r", "coder")
    task_id = await store.create_task(
        agent_id="coder-r",
        description="Document add()",
        repo=str(tmp_path),
        test_command="true",
        runner="runner-r",
    )
    first = await store.note(task_id, "working", "model alpha: read_file")
    second = await store.note(task_id, "working", "read_file: ok")
    instance = connected.cluster.instance
    while await relay_once(store, connected.client.publisher, instance):
        pass  # other tests' events too, oldest first
    sent = await _sent(bus_pool, instance, task_id)
    assert [(m["event_id"], m["message"]) for m in sent] == [
        (first, "model alpha: read_file"),
        (second, "read_file: ok"),
    ]
    assert sent[0]["description"] == "Document add()" and sent[0]["agent_id"] == "coder-r"
    assert await relay_once(store, connected.client.publisher, instance) == 0  # all sent
    assert len(await _sent(bus_pool, instance, task_id)) == 2
    json.dumps(sent)  # plain JSON, as any reader takes it


async def test_an_event_whose_send_fails_stays_in_the_outbox(
    connected: Connected, bus_pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    store = connected.store
    await store.ensure_agent("coder-r", "coder")
    task_id = await store.create_task(
        agent_id="coder-r", description="x", repo=str(tmp_path), test_command="true",
        runner="runner-r",
    )  # fmt: skip
    await store.note(task_id, "working", "kept")

    async def failing(rows: list[dict]) -> None:
        raise ConnectionError("the bus went away")

    with pytest.raises(ConnectionError):
        await store.relay_events(failing)
    instance = connected.cluster.instance
    while await relay_once(store, connected.client.publisher, instance):
        pass
    assert [m["message"] for m in await _sent(bus_pool, instance, task_id)] == ["kept"]
