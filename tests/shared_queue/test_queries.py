"""The bus's SQL: every query is named once, and the hot read uses its index."""

from __future__ import annotations

import uuid

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection
from singularity.postgres.endpoint import Endpoint
from singularity.postgres.queries import Queries
from singularity.postgres.topology import Database
from singularity.shared_queue.install import ensure_queue, install_pgmq, missing_queues
from singularity.shared_queue.sql import QUERIES, archive_table


def test_queries_are_loaded_by_name() -> None:
    assert {"read", "archive", "send_batch", "set_vt", "prune_archive"} <= set(QUERIES.names())
    assert "{archive}" in QUERIES["read"].as_string()  # an identifier placeholder
    assert Queries("singularity.postgres").names()  # the other package's file loads too


async def test_the_read_looks_up_handled_requests_through_the_index(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    async with bus_pool.connection() as conn:
        # A large archive, so that only an index makes the lookup cheap.
        await conn.execute(
            f"INSERT INTO pgmq.a_{queue} (msg_id, vt, message) "
            "SELECT g, now(), jsonb_build_object('request_id', 'r' || g) "
            "FROM generate_series(1, 20000) g"
        )
        await conn.execute(f"ANALYZE pgmq.a_{queue}")
        await conn.execute(
            'SELECT pgmq.send(%s, \'{"request_id": "r5", "id": "x"}\'::jsonb)', (queue,)
        )
        query = QUERIES.compose("read", archive=archive_table(queue))
        params = {"queue": queue, "vt": 0, "qty": 10, "max_bytes": 1 << 20}
        plan = "\n".join(
            row[0]
            for row in await (
                await conn.execute(b"EXPLAIN " + query.as_bytes(conn), params)
            ).fetchall()
        )
        rows = await (await conn.execute(query, params)).fetchall()
    assert f"a_{queue}_request_key_idx" in plan
    assert f"Seq Scan on a_{queue}" not in plan
    assert [row[-1] for row in rows] == [True]  # r5 is in the archive: seen


async def test_a_queue_can_be_created_where_only_pgmq_is_installed(cluster: Cluster) -> None:
    scratch = f"scratch_{uuid.uuid4().hex[:8]}"
    maintenance = cluster.maintenance(Database.SHARED_QUEUE)
    async with async_connection(maintenance) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    try:
        async with async_connection(maintenance.with_database(scratch)) as conn:
            await install_pgmq(conn)
            assert await ensure_queue(conn, "jobs") is True
            assert await ensure_queue(conn, "jobs") is False
            await conn.execute("SELECT pgmq.send('jobs', '{}'::jsonb)")
    finally:
        async with async_connection(maintenance) as conn:
            await conn.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(scratch))
            )


async def test_a_bootstrapped_bus_misses_no_queue(bus_endpoint: Endpoint) -> None:
    async with async_connection(bus_endpoint) as conn:
        assert await missing_queues(conn) == []
