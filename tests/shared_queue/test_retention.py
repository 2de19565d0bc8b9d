"""Retention deletes archive rows older than the retention period, in batches, and only those."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from helpers import count, job
from singularity.shared_queue import Publisher, prune_archives


async def test_old_archive_rows_are_pruned_and_recent_ones_kept(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    ids = await Publisher(bus_pool).send_batch(queue, [job(i) for i in range(12)])
    async with bus_pool.connection() as conn:
        await conn.execute("SELECT pgmq.archive(%s, %s::bigint[])", (queue, ids))
        # Seven were archived 91 days ago, five 89 days ago.
        await conn.execute(
            f"UPDATE pgmq.a_{queue} SET archived_at = now() - "
            "CASE WHEN msg_id = ANY(%s) THEN interval '91 days' ELSE interval '89 days' END",
            (ids[:7],),
        )
        pruned = await prune_archives(conn, [queue], days=90, batch=3)
        rows = await (await conn.execute(f"SELECT msg_id FROM pgmq.a_{queue}")).fetchall()
    assert pruned == {queue: 7}
    assert sorted(r[0] for r in rows) == ids[7:]
    assert await count(bus_pool, f"a_{queue}") == 5
