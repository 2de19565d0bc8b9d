"""Fixtures of the Genesis tests: a worker, a queue it may answer on, its database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from genesis_support import RunningGenesis, require_bwrap
from helpers import answer_queue
from singularity.config import Settings, load_settings
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database, Role


@pytest.fixture
def genesis_settings(platform_env: dict[str, str], tmp_path: Path) -> Settings:
    return load_settings(
        _env_file=None, shared_queue_poll_ms=50, genesis_data_dir=tmp_path / "genesis"
    )


@pytest.fixture
async def genesis(genesis_settings: Settings, cluster: Cluster) -> AsyncIterator[RunningGenesis]:
    require_bwrap()
    async with RunningGenesis(genesis_settings, cluster) as running:
        yield running


@pytest.fixture
async def genesis_replies(cluster: Cluster) -> AsyncIterator[str]:
    """A fresh queue that Genesis may answer on."""
    async with answer_queue(cluster, Role.GENESIS, "test_gen") as name:
        yield name


@pytest.fixture
async def genesis_db(cluster: Cluster) -> AsyncIterator[AsyncConnectionPool]:
    """The genesis database, as its administrator (to look at what Genesis recorded)."""
    pool = await open_pool(cluster.admin(Database.GENESIS), name="test-genesis", max_size=4)
    yield pool
    await pool.close()
