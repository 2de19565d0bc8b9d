"""How CentralCloud reaches its two databases: the archives read-only, its own read-write."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from singularity.centralcloud.archives import ArchiveReader, read_only
from singularity.centralcloud.store import CentralCloudStore
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database, Role

__all__ = ["archive_reader", "centralcloud_store"]


@contextlib.asynccontextmanager
async def archive_reader(
    cluster: Cluster, *, name: str = "centralcloud-archives"
) -> AsyncIterator[ArchiveReader]:
    """The archives, as the centralcloud_analytics role, in read-only transactions."""
    endpoint = read_only(cluster.service(Role.CENTRALCLOUD_ANALYTICS, Database.SHARED_QUEUE))
    pool = await open_pool(endpoint, name=name, max_size=2)
    try:
        yield ArchiveReader(pool)
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def centralcloud_store(
    cluster: Cluster, *, name: str = "centralcloud-store"
) -> AsyncIterator[CentralCloudStore]:
    """The centralcloud database, as the centralcloud role."""
    pool = await open_pool(
        cluster.service(Role.CENTRALCLOUD, Database.CENTRALCLOUD), name=name, max_size=2
    )
    try:
        yield CentralCloudStore(pool)
    finally:
        await pool.close()
