"""Fixtures of the CentralCloud tests: archived messages put on the shared bus, cleaned up after.

The session shares one bus, so other tests' messages are in the archives too: every test here
uses task types, agents, models and languages of its own, and checks the figures of those.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from centralcloud.support import Archives
from singularity.centralcloud.archives import ArchiveReader
from singularity.centralcloud.pools import archive_reader, centralcloud_store
from singularity.centralcloud.store import CentralCloudStore
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, open_pool
from singularity.postgres.topology import Database


@pytest.fixture
def tag() -> str:
    """A suffix that makes this test's task types, agents, models and languages its own."""
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def archives(cluster: Cluster) -> AsyncIterator[Archives]:
    async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        filler = Archives(conn, cluster)
        try:
            yield filler
        finally:
            await filler.clean()


@pytest.fixture
async def reader(cluster: Cluster) -> AsyncIterator[ArchiveReader]:
    async with archive_reader(cluster, name="test-archives") as opened:
        yield opened


@pytest.fixture
async def store(cluster: Cluster) -> AsyncIterator[CentralCloudStore]:
    async with centralcloud_store(cluster, name="test-centralcloud") as opened:
        yield opened


@pytest.fixture
async def centralcloud_db(cluster: Cluster) -> AsyncIterator[AsyncConnectionPool]:
    """The centralcloud database as its administrator (to look at what was stored)."""
    pool = await open_pool(cluster.admin(Database.CENTRALCLOUD), name="test-cc", max_size=2)
    yield pool
    await pool.close()
