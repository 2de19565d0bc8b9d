"""send_once: a message sent again under the same key is not sent twice, however many senders
try at once; only the roles of the access matrix may use the keys; retention prunes old ones."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from helpers import answer_queue, count
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, open_pool
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import Publisher, prune_sent_once
from singularity.shared_queue.publisher import send_once


async def test_a_key_sends_once_even_from_many_senders_at_once(
    cluster: Cluster, bus_pool: AsyncConnectionPool
) -> None:
    nexus = await open_pool(
        cluster.service(Role.NEXUS, Database.SHARED_QUEUE), name="t", max_size=6
    )
    try:
        async with answer_queue(cluster, Role.NEXUS, "test_once") as queue:
            publisher = Publisher(nexus)
            key = f"test:{uuid.uuid4()}"
            first = await publisher.send_once(queue, key, {"request_id": "r1", "n": 1})
            again = await publisher.send_once(queue, key, {"request_id": "r1", "n": 2})
            assert isinstance(first, int) and again is None
            other = f"test:{uuid.uuid4()}"
            racing = await asyncio.gather(
                *(publisher.send_once(queue, other, {"request_id": "r2", "n": n}) for n in range(6))
            )
            assert sum(r is not None for r in racing) == 1
            assert await count(bus_pool, f"q_{queue}") == 2
    finally:
        await nexus.close()


async def test_a_role_outside_the_matrix_cannot_take_keys(cluster: Cluster) -> None:
    genesis = cluster.service(Role.GENESIS, Database.SHARED_QUEUE)
    async with (
        answer_queue(cluster, Role.GENESIS, "test_once") as queue,
        async_connection(genesis) as conn,
    ):
        # Genesis may send to the queue, but not through the keys: only Nexus may.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await send_once(conn, queue, f"test:{uuid.uuid4()}", {"request_id": "r"})


async def test_old_keys_are_pruned_and_recent_ones_kept(bus_pool: AsyncConnectionPool) -> None:
    old, recent = f"test:{uuid.uuid4()}", f"test:{uuid.uuid4()}"
    async with bus_pool.connection() as conn:
        await conn.execute(
            "INSERT INTO bus.sent_once (key, sent_at) VALUES "
            "(%s, now() - interval '91 days'), (%s, now() - interval '89 days')",
            (old, recent),
        )
        pruned = await prune_sent_once(conn, days=90, batch=1)
        rows = await (
            await conn.execute(
                "SELECT key FROM bus.sent_once WHERE key = ANY(%s)", ([old, recent],)
            )
        ).fetchall()
    assert pruned == 1
    assert [r[0] for r in rows] == [recent]
