"""Retention deletes archive rows and workspace snapshots older than the retention period, in
batches, and only those."""

from __future__ import annotations

import hashlib
import os

from psycopg_pool import AsyncConnectionPool

from helpers import count, job
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import Publisher, prune_archives, prune_workspaces
from singularity.shared_queue.manifest import Entry, Manifest
from singularity.shared_queue.workspace_store import WorkspaceStore


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


async def test_unused_snapshots_then_orphan_blobs_are_pruned_and_nothing_else(
    cluster: Cluster, bus_pool: AsyncConnectionPool, publisher_pool: AsyncConnectionPool
) -> None:
    salt = os.urandom(8).hex()
    trees = {}
    for name, files in {
        "old": {"shared": "both", "mine": "old only"},
        "new": {"shared": "both", "yours": "new only"},
    }.items():
        trees[name] = {path: f"{salt} {text}".encode() for path, text in files.items()}
    manifests = {}
    async with publisher_pool.connection() as conn:
        store = WorkspaceStore(conn)
        for name, files in trees.items():
            await store.store_blobs([(_digest(data), data) for data in files.values()])
            entries = [
                Entry(path, "file", mode=0o644, size=len(data), chunks=(_digest(data),))
                for path, data in files.items()
            ]
            manifests[name] = Manifest.of(entries)
            await store.store_snapshot(manifests[name].id, manifests[name].canonical())
        orphan = f"{salt} stored, never in a snapshot".encode()
        recent = f"{salt} stored a moment ago".encode()
        await store.store_blobs([(_digest(orphan), orphan), (_digest(recent), recent)])
    digests = [_digest(d) for d in [*trees["old"].values(), *trees["new"].values(), orphan]]
    async with bus_pool.connection() as conn:
        await conn.execute(
            "UPDATE bus.workspace_snapshots SET last_used_at = now() - interval '91 days' "
            "WHERE id = %s",
            (manifests["old"].id,),
        )
        await conn.execute(
            "UPDATE bus.workspace_blobs SET stored_at = now() - interval '2 days' "
            "WHERE digest = ANY(%s)",
            (digests,),
        )
    owner = cluster.service(Role.CENTRALCLOUD, Database.SHARED_QUEUE)
    async with async_connection(owner) as conn:
        snapshots, blobs = await prune_workspaces(conn, days=90, batch=1)
    assert snapshots >= 1 and blobs >= 2
    async with bus_pool.connection() as conn:
        kept = await (await conn.execute("SELECT id FROM bus.workspace_snapshots")).fetchall()
        left = await (
            await conn.execute(
                "SELECT digest FROM bus.workspace_blobs WHERE digest = ANY(%s)",
                ([*digests, _digest(recent)],),
            )
        ).fetchall()
    assert manifests["old"].id not in {row[0] for row in kept}
    assert manifests["new"].id in {row[0] for row in kept}
    # The old snapshot's own blob and the old orphan go; the shared one, the new snapshot's
    # and the orphan stored a moment ago (a publish may be counting on it) stay.
    assert {row[0] for row in left} == {
        _digest(trees["new"]["shared"]),
        _digest(trees["new"]["yours"]),
        _digest(recent),
    }


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
