"""A decision is answered exactly once: when its answer went out but the process stopped before
noting it (a SIGKILL, a database restart), the sweeper that publishes unpublished decisions
does not send a second answer."""

from __future__ import annotations

import uuid

import pytest
from psycopg_pool import AsyncConnectionPool

from helpers import count, eventually
from nexus_support import RunningNexus, wait_for_message
from singularity.shared_queue import Publisher

DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"

KINDS = {
    # kind: (request queue, extra fields, API path and body of the decision, state, time column)
    "approval": (
        "approval_requests",
        {"file_path": "app.py", "diff": DIFF},
        ("approvals", "approve", {"user": "ana"}),
        "approval_requests",
        "approved_at",
    ),
    "question": (
        "question_requests",
        {"question": "Which database?"},
        ("questions", "answer", {"response": "pg"}),
        "question_requests",
        "response_at",
    ),
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_an_answer_sent_before_its_mark_was_lost_is_not_sent_again(
    kind: str,
    nexus: RunningNexus,
    bus_pool: AsyncConnectionPool,
    nexus_db: AsyncConnectionPool,
    reply_queue: str,
) -> None:
    queue, fields, (path, action, body), table, decided_at = KINDS[kind]
    ident, request_id = str(uuid.uuid4()), f"req-{uuid.uuid4().hex[:8]}"
    await Publisher(bus_pool).send(
        queue, {"id": ident, "request_id": request_id, "reply_to": reply_queue, **fields}
    )
    async with nexus.client() as client:

        async def stored() -> bool:
            return (await client.get(f"/api/{path}/{ident}")).status_code == 200

        await eventually(stored)
        decided = await client.post(f"/api/{path}/{ident}/{action}", json=body)
        assert decided.status_code == 200, decided.text
    await wait_for_message(bus_pool, reply_queue, request_id=request_id)

    # What a process stopped between the send and its note leaves behind: an answer on the
    # queue, a decision not marked as published, old enough for the sweeper to take it.
    async with nexus_db.connection() as conn:
        await conn.execute(f"UPDATE {kind}_state SET published_at = NULL WHERE id = %s", (ident,))
        await conn.execute(
            f"UPDATE {table} SET {decided_at} = {decided_at} - interval '1 minute' WHERE id = %s",
            (ident,),
        )
    assert await nexus.parts.hitl.publish_unpublished() >= 1

    async with nexus_db.connection() as conn:
        row = await (
            await conn.execute(
                f"SELECT published_at IS NOT NULL FROM {kind}_state WHERE id = %s", (ident,)
            )
        ).fetchone()
    assert row == (True,)
    assert await count(bus_pool, f"q_{reply_queue}") == 1


@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_decided_request_delivered_again_is_not_answered_again(
    kind: str,
    nexus: RunningNexus,
    bus_pool: AsyncConnectionPool,
    reply_queue: str,
) -> None:
    queue, fields, (path, action, body), _, _ = KINDS[kind]
    ident, request_id = str(uuid.uuid4()), f"req-{uuid.uuid4().hex[:8]}"
    await Publisher(bus_pool).send(
        queue, {"id": ident, "request_id": request_id, "reply_to": reply_queue, **fields}
    )
    async with nexus.client() as client:

        async def stored() -> bool:
            return (await client.get(f"/api/{path}/{ident}")).status_code == 200

        await eventually(stored)
        decided = await client.post(f"/api/{path}/{ident}/{action}", json=body)
        assert decided.status_code == 200, decided.text
    await wait_for_message(bus_pool, reply_queue, request_id=request_id)

    # The request comes back as if its archive had never committed (a SIGKILL, a database
    # restart): visible in its queue again, and not in the archive.
    async with bus_pool.connection() as conn, conn.transaction():
        await conn.execute(
            f"INSERT INTO pgmq.q_{queue} (msg_id, read_ct, enqueued_at, vt, message) "
            "OVERRIDING SYSTEM VALUE "
            f"SELECT msg_id, read_ct, enqueued_at, now(), message FROM pgmq.a_{queue} "
            "WHERE message->>'id' = %s",
            (ident,),
        )
        await conn.execute(f"DELETE FROM pgmq.a_{queue} WHERE message->>'id' = %s", (ident,))

    async def archived_again() -> bool:
        async with bus_pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"SELECT count(*) FROM pgmq.a_{queue} WHERE message->>'id' = %s", (ident,)
                )
            ).fetchone()
        return row == (1,)

    await eventually(archived_again, seconds=30)
    assert await count(bus_pool, f"q_{reply_queue}") == 1
