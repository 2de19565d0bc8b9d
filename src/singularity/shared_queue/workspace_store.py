"""The workspace tables of the bus: blobs by content and snapshot manifests by id.

The one owner of their queries (`queries.sql`, section "workspaces"), for whoever publishes a
snapshot, whoever fetches one, and the retention that prunes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
import structlog

from singularity.shared_queue.manifest import CHUNK_BYTES, ManifestRefused
from singularity.shared_queue.sql import QUERIES

__all__ = ["WorkspaceStore", "prune_workspaces"]

log = structlog.get_logger(__name__)


class WorkspaceStore:
    """The workspace tables, on one connection (autocommit: each call is its own transaction)."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self._conn = conn

    async def present(self, digests: Sequence[str]) -> set[str]:
        """Which of these blobs the bus holds (each marked as counted on now)."""
        cursor = await self._conn.execute(QUERIES["present_blobs"], {"digests": list(digests)})
        return {row[0] for row in await cursor.fetchall()}

    async def store_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> int:
        """Store blobs (digest, data); how many were new. The server refuses a digest that
        is not its data's."""
        if not blobs:
            return 0
        params = {"digests": [d for d, _ in blobs], "data": [data for _, data in blobs]}
        cursor = await self._conn.execute(QUERIES["store_blobs"], params)
        return cursor.rowcount

    async def store_snapshot(self, snapshot_id: str, manifest: bytes) -> bool:
        """Store a manifest (its canonical bytes) under its id, or mark it used; True if it was
        new. The server refuses an id that is not the manifest's sha256."""
        cursor = await self._conn.execute(
            QUERIES["store_snapshot"], {"id": snapshot_id, "manifest": manifest}
        )
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def manifest(self, snapshot_id: str, *, max_bytes: int) -> bytes | None:
        """A snapshot's manifest bytes, None for an unknown id; ManifestRefused when it is
        longer than `max_bytes` (it is never sent)."""
        params = {"id": snapshot_id, "max_bytes": max_bytes}
        async with self._conn.cursor(binary=True) as cursor:
            await cursor.execute(QUERIES["snapshot_manifest"], params)
            row = await cursor.fetchone()
        if row is None:
            return None
        text, size = row
        if text is None:
            raise ManifestRefused(
                f"the snapshot's manifest holds {size} bytes, more than {max_bytes} allowed"
            )
        return bytes(text)

    async def blobs(self, digests: Sequence[str]) -> dict[str, bytes | None]:
        """The data of these blobs that the bus holds (None for one longer than a chunk)."""
        params = {"digests": list(digests), "max_bytes": CHUNK_BYTES}
        # Binary results: bytea comes as its bytes, not as hex text twice their size.
        async with self._conn.cursor(binary=True) as cursor:
            await cursor.execute(QUERIES["fetch_blobs"], params)
            rows = await cursor.fetchall()
        return {row[0]: bytes(row[1]) if row[1] is not None else None for row in rows}


async def prune_workspaces(
    conn: psycopg.AsyncConnection, *, days: int, batch: int = 1000
) -> tuple[int, int]:
    """Delete snapshots unused for `days`, then blobs no snapshot names; (snapshots, blobs)."""
    snapshots = await _prune(conn, "prune_snapshots", {"days": days, "batch": batch})
    blobs = await _prune(conn, "prune_blobs", {"batch": batch})
    if snapshots or blobs:
        log.info("workspaces_pruned", snapshots=snapshots, blobs=blobs, older_than_days=days)
    return snapshots, blobs


async def _prune(conn: psycopg.AsyncConnection, query: str, params: dict[str, int]) -> int:
    total = 0
    while True:
        cursor = await conn.execute(QUERIES[query], params)
        total += cursor.rowcount
        if cursor.rowcount < params["batch"]:
            return total
