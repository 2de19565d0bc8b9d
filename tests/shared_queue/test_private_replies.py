"""A private reply queue as a ledger: only its answerer may send there, its answer is popped,
anything else found there is logged and dropped, and the queue is gone at the end."""

from __future__ import annotations

import functools
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import LlmResult, Recorded, Requester, RequestTimedOut, Route
from singularity.shared_queue.private_replies import private_replies
from singularity.shared_queue.publisher import send_message


async def bodies_of(conn: psycopg.AsyncConnection, queue: str) -> list[Any]:
    cursor = await conn.execute(f"SELECT message FROM pgmq.q_{queue} ORDER BY msg_id")
    return [row[0] for row in await cursor.fetchall()]


async def _queue_exists(cluster: Cluster, queue: str) -> bool:
    async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        row = await (
            await conn.execute("SELECT count(*) FROM pgmq.meta WHERE queue_name = %s", (queue,))
        ).fetchone()
    return bool(row and row[0])


async def test_the_answer_is_popped_and_everything_else_there_is_dropped(cluster: Cluster) -> None:
    admin = cluster.admin(Database.SHARED_QUEUE)
    nexus = cluster.service(Role.NEXUS, Database.SHARED_QUEUE)
    genesis = cluster.service(Role.GENESIS, Database.SHARED_QUEUE)
    async with (
        async_connection(admin) as conn,
        private_replies(
            conn, answerer_role=cluster.role_name(Role.NEXUS), answer_model=LlmResult
        ) as replies,
    ):
        await replies.record(None, Recorded("r-1", "llm_requests", {}))
        answer = {"request_id": "r-1", "result": "yes", "model": "m", "odd": [1]}
        hostile: list[Any] = [
            {"request_id": "someone-else", "result": "no", "model": "m"},
            {"request_id": "r-1", "result": 42, "model": "m"},
            {"request_id": ["r-1"]},
            "r-1",
            answer,
            {"request_id": "r-1", "result": "a second answer", "model": "m"},
        ]
        async with async_connection(nexus) as answerer:
            for body in hostile:
                await send_message(answerer, replies.queue, body)
        async with async_connection(genesis) as stranger:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await send_message(stranger, replies.queue, answer)
        with capture_logs() as logs:
            got = await replies.answer("r-1")
            assert await replies.answer("r-1") == answer  # the first answer counts
        assert got == answer  # as it came, unknown fields and all
        assert [e["event"] for e in logs] == ["reply_ignored"] * 4
        left = await (await conn.execute(f"SELECT count(*) FROM pgmq.q_{replies.queue}")).fetchone()
        assert left == (1,)  # the second answer, never looked for
    assert not await _queue_exists(cluster, replies.queue)


async def test_a_requester_over_it_asks_once_and_says_who_did_not_answer(
    cluster: Cluster, queue: str
) -> None:
    async with (
        async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn,
        private_replies(
            conn, answerer_role=cluster.role_name(Role.NEXUS), answer_model=LlmResult
        ) as replies,
    ):
        route = Route(replies.queue, "Nexus")
        requester = Requester(functools.partial(send_message, conn), replies, {queue: route})
        with pytest.raises(RequestTimedOut, match=rf"on {replies.queue} after 0.2 s: is Nexus"):
            await requester.ask(queue, {"question": "anyone?"}, key="ignored", timeout_s=0.2)
        (sent,) = await bodies_of(conn, queue)
        assert sent == {
            "question": "anyone?",
            "request_id": sent["request_id"],
            "reply_to": replies.queue,
        }
