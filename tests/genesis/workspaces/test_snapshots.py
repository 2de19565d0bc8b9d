"""A worker checks a snapshot out of the bus: exactly the tree that was published, through its
blob cache, and nothing at all from a manifest or a blob that breaks a rule."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from singularity.genesis.workspaces.blob_cache import BlobCache
from singularity.genesis.workspaces.snapshots import Snapshots, WorkspaceRefused
from singularity.shared_queue import publish_snapshot, snapshot_of
from singularity.shared_queue.manifest import canonical_json
from workspace_support import make_workspace_repo, tree_of

DISK = 256 << 20


def _snapshots(pool: AsyncConnectionPool, root: Path, cache_bytes: int = 64 << 20) -> Snapshots:
    return Snapshots(pool, BlobCache(root / "blobs", cache_bytes), root / "checkouts")


async def _publish(pool: AsyncConnectionPool, repo: Path) -> str:
    async with pool.connection() as conn:
        return (await publish_snapshot(conn, snapshot_of(repo))).id


async def test_a_checkout_is_the_published_working_tree_exactly(
    publisher_pool: AsyncConnectionPool, worker_pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    repo = make_workspace_repo(tmp_path)
    snapshot_id = await _publish(publisher_pool, repo)
    expected = tree_of(repo)
    del expected["debug.log"]  # ignored by git: it stays home
    snapshots = _snapshots(worker_pool, tmp_path / "worker")
    async with snapshots.checked_out(snapshot_id, max_bytes=DISK) as tree:
        assert tree_of(tree) == expected
        assert os.readlink(tree / "passwd") == "/etc/passwd"  # the link, not the file
        assert oct((tree / "run.sh").stat().st_mode & 0o7777) == "0o755"
        holder = tree.parent
    assert not holder.exists()  # the checkout is removed after use
    assert oct((tmp_path / "worker" / "checkouts").stat().st_mode & 0o777) == "0o700"


async def test_a_cache_hit_downloads_nothing(
    publisher_pool: AsyncConnectionPool,
    worker_pool: AsyncConnectionPool,
    bus_pool: AsyncConnectionPool,
    tmp_path: Path,
) -> None:
    repo = make_workspace_repo(tmp_path)
    (repo / "unique.txt").write_text(str(tmp_path))
    snapshot_id = await _publish(publisher_pool, repo)
    snapshots = _snapshots(worker_pool, tmp_path / "worker")
    manifest = await snapshots.manifest(snapshot_id, max_bytes=DISK)
    assert await snapshots.fetch(manifest) == len(manifest.chunk_lengths())
    assert await snapshots.fetch(manifest) == 0
    # With its blobs gone from the bus, the cache alone still checks the snapshot out.
    async with bus_pool.connection() as conn:
        await conn.execute(
            "DELETE FROM bus.workspace_blobs WHERE digest = %s",
            (hashlib.sha256(str(tmp_path).encode()).hexdigest(),),
        )
    async with snapshots.checked_out(snapshot_id, max_bytes=DISK) as tree:
        assert (tree / "unique.txt").read_text() == str(tmp_path)


async def test_the_cache_keeps_to_its_bound(
    publisher_pool: AsyncConnectionPool, worker_pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    repo = make_workspace_repo(tmp_path)
    snapshot_id = await _publish(publisher_pool, repo)
    snapshots = _snapshots(worker_pool, tmp_path / "worker", cache_bytes=1 << 20)
    async with snapshots.checked_out(snapshot_id, max_bytes=DISK) as tree:
        assert (tree / "pkg" / "big.bin").stat().st_size > 2 << 20
    assert 0 < snapshots.cache.size() <= 1 << 20


# -- hostile snapshots ----------------------------------------------------------------------


async def _plant(bus: AsyncConnectionPool, manifest: dict[str, Any]) -> str:
    """Store a manifest as a hostile publisher could (its id is its hash: the server allows it)."""
    raw = canonical_json(manifest)
    snapshot_id = hashlib.sha256(raw).hexdigest()
    async with bus.connection() as conn:
        await conn.execute(
            "INSERT INTO bus.workspace_snapshots (id, manifest, digests) VALUES (%s, %s, '{}') "
            "ON CONFLICT DO NOTHING",
            (snapshot_id, raw),
        )
    return snapshot_id


def _file(path: str, data: bytes = b"x", size: int | None = None) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    size = len(data) if size is None else size
    chunks = [digest] * max(1, -(-size // (1 << 20))) if size else []
    return {"path": path, "type": "file", "mode": 0o644, "size": size, "chunks": chunks}


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([_file("../x")], "is not a plain path inside the tree"),
        ([_file("/tmp/x")], "is not relative to the tree"),
        (
            [{"path": "out", "type": "symlink", "target": "/tmp"}, _file("out/x")],
            "lies under 'out', which is a symlink",
        ),
        ([_file("x"), _file("x", b"y")], "is listed twice"),
        ([_file("huge", size=1 << 30)], "more than the 256 MiB allowed"),
    ],
)
async def test_a_hostile_manifest_is_refused_and_writes_nothing(
    bus_pool: AsyncConnectionPool,
    worker_pool: AsyncConnectionPool,
    tmp_path: Path,
    entries: list[dict[str, Any]],
    reason: str,
) -> None:
    snapshot_id = await _plant(bus_pool, {"version": 1, "entries": entries})
    snapshots = _snapshots(worker_pool, tmp_path / "worker")
    with pytest.raises(WorkspaceRefused, match=reason):
        async with snapshots.checked_out(snapshot_id, max_bytes=DISK):
            pass
    assert not (tmp_path / "x").exists()
    assert snapshots.cache.size() == 0


async def test_a_blob_that_does_not_match_its_digest_is_refused(
    bus_pool: AsyncConnectionPool, worker_pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    claimed = f"the real content {tmp_path}".encode()
    digest = hashlib.sha256(claimed).hexdigest()
    # The server refuses such a blob; a superuser switching its triggers off does not.
    async with bus_pool.connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "INSERT INTO bus.workspace_blobs (digest, data, size) VALUES (%s, %s, %s)",
            (digest, b"evil content of equal size" + b"." * (len(claimed) - 26), len(claimed)),
        )
    snapshot_id = await _plant(bus_pool, {"version": 1, "entries": [_file("a", claimed)]})
    snapshots = _snapshots(worker_pool, tmp_path / "worker")
    try:
        with pytest.raises(WorkspaceRefused, match="corrupt: its data does not hash to its name"):
            async with snapshots.checked_out(snapshot_id, max_bytes=DISK):
                pass
    finally:
        async with bus_pool.connection() as conn:
            await conn.execute("DELETE FROM bus.workspace_blobs WHERE digest = %s", (digest,))
    assert snapshots.cache.size() == 0


async def test_a_missing_blob_or_an_unknown_snapshot_is_refused(
    bus_pool: AsyncConnectionPool, worker_pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    snapshots = _snapshots(worker_pool, tmp_path / "worker")
    with pytest.raises(WorkspaceRefused, match="is not in the bus"):
        await snapshots.manifest("f" * 64, max_bytes=DISK)
    never = f"never stored {tmp_path}".encode()
    snapshot_id = await _plant(bus_pool, {"version": 1, "entries": [_file("a", never)]})
    with pytest.raises(WorkspaceRefused, match="of the snapshot is not in the bus"):
        async with snapshots.checked_out(snapshot_id, max_bytes=DISK):
            pass
