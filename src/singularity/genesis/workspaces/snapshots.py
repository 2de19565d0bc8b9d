"""Checking out a workspace snapshot from the bus: the worker's side of repositories that travel.

The manifest and the blobs come from whoever could publish an experiment request, so they are
hostile input: the manifest must hash to the snapshot's id and pass `Manifest.from_json`
(relative plain paths, no duplicates, nothing under a link, modes reduced to 0644 and 0755,
within the experiment's bounds) before anything is fetched; each blob must hash to its digest
and have the length the manifest gives it. Only blobs missing from the worker's cache
(`BlobCache`) are fetched. The tree is written into a private directory and removed after use.

A snapshot refused for any of these reasons raises WorkspaceRefused (a UsageError: the asker
gets an error answer with the reason); a database that cannot be reached is the consumer's to
retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from singularity.config import Settings
from singularity.errors import UsageError
from singularity.genesis.workspaces.blob_cache import BlobCache
from singularity.genesis.workspaces.tree_writer import write_tree
from singularity.genesis.workspaces.workspace import MAX_ENTRIES, remove_workspace
from singularity.private import private_dir
from singularity.shared_queue.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    ManifestRefused,
)
from singularity.shared_queue.workspace_store import WorkspaceStore

__all__ = ["SNAPSHOT_PREFIX", "Snapshots", "WorkspaceRefused"]

SNAPSHOT_PREFIX = "snapshot:"  # how an experiment's record names the snapshot it ran on
_FETCH_BATCH = 16  # blobs per query: at most 16 MiB in flight


class WorkspaceRefused(UsageError):
    """A snapshot this worker will not check out: unknown, damaged, or beyond a bound."""


class Snapshots:
    """Checks snapshots out of the bus, through a blob cache."""

    def __init__(self, pool: AsyncConnectionPool, cache: BlobCache, checkouts: Path) -> None:
        self._pool = pool
        self.cache = cache
        self._checkouts = checkouts

    @classmethod
    def from_settings(cls, pool: AsyncConnectionPool, settings: Settings) -> Snapshots:
        """The snapshots of a worker with these settings, read through `pool` (the bus)."""
        cache = BlobCache(settings.genesis_dir / "blobs", settings.genesis_blob_cache_mb << 20)
        return cls(pool, cache, settings.genesis_dir / "snapshots")

    @contextlib.asynccontextmanager
    async def checked_out(self, snapshot_id: str, *, max_bytes: int) -> AsyncIterator[Path]:
        """A private directory holding the snapshot's tree, removed when the block ends."""
        manifest = await self.manifest(snapshot_id, max_bytes=max_bytes)
        await self.fetch(manifest)
        holder = await asyncio.to_thread(self._new_checkout)
        try:
            tree = holder / "tree"
            await asyncio.to_thread(write_tree, manifest, tree, self.cache)
            await asyncio.to_thread(self.cache.trim)
            yield tree
        finally:
            await asyncio.to_thread(remove_workspace, holder)

    async def manifest(self, snapshot_id: str, *, max_bytes: int) -> Manifest:
        """The snapshot's manifest, checked; WorkspaceRefused (one line) otherwise."""
        async with self._pool.connection() as conn:
            try:
                raw = await WorkspaceStore(conn).manifest(snapshot_id, max_bytes=MAX_MANIFEST_BYTES)
            except ManifestRefused as exc:
                raise WorkspaceRefused(f"snapshot {snapshot_id}: {exc}") from None
        if raw is None:
            raise WorkspaceRefused(
                f"snapshot {snapshot_id} is not in the bus (never published, or pruned after "
                "going unused for the retention period)"
            )
        # The server checks this as the manifest is stored; the worker trusts no one.
        if hashlib.sha256(raw).hexdigest() != snapshot_id:
            raise WorkspaceRefused(f"snapshot {snapshot_id}: the manifest does not match its id")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise WorkspaceRefused(f"snapshot {snapshot_id}: the manifest is not JSON") from None
        try:
            return Manifest.from_json(data, max_entries=MAX_ENTRIES, max_bytes=max_bytes)
        except ManifestRefused as exc:
            raise WorkspaceRefused(f"snapshot {snapshot_id}: {exc}") from None

    async def fetch(self, manifest: Manifest) -> int:
        """Bring the manifest's blobs missing from the cache; how many were fetched."""
        lengths = manifest.chunk_lengths()
        missing = await asyncio.to_thread(
            lambda: [digest for digest in lengths if not self.cache.has(digest)]
        )
        for start in range(0, len(missing), _FETCH_BATCH):
            batch = missing[start : start + _FETCH_BATCH]
            async with self._pool.connection() as conn:
                found = await WorkspaceStore(conn).blobs(batch)
            for digest in batch:
                data = _checked(digest, found, lengths[digest])
                await asyncio.to_thread(self.cache.store, digest, data)
        return len(missing)

    def _new_checkout(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="snapshot-", dir=private_dir(self._checkouts)))


def _checked(digest: str, found: dict[str, bytes | None], length: int) -> bytes:
    """A fetched blob's data, which must hash to its digest and have the manifest's length."""
    if digest not in found:
        raise WorkspaceRefused(f"blob {digest} of the snapshot is not in the bus")
    data = found[digest]
    if data is None:
        raise WorkspaceRefused(f"blob {digest} is larger than a chunk")
    if hashlib.sha256(data).hexdigest() != digest:
        raise WorkspaceRefused(f"blob {digest} is corrupt: its data does not hash to its name")
    if len(data) != length:
        raise WorkspaceRefused(f"blob {digest} holds {len(data)} bytes, the manifest says {length}")
    return data
