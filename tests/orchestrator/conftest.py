"""Fixtures of the Singularity tests: instances of their own on the session's bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from genesis_support import RunningGenesis, require_bwrap
from singularity.bootstrap import bootstrap
from singularity.config import Settings
from singularity.orchestrator.platform import Connected, connect
from singularity.postgres.cluster import Cluster

# Instances 2 and 3: their reply queues are theirs alone, so these tests see only their own
# answers, whatever else the session's bus carries.
INSTANCES = (2, 3)


@pytest.fixture(scope="session")
def instances(cluster: Cluster, vector_available: bool) -> tuple[int, ...]:
    asyncio.run(bootstrap(cluster, instances=INSTANCES, require_vector=vector_available))
    return INSTANCES


@pytest.fixture
def instance_cluster(cluster: Cluster, instances: tuple[int, ...]) -> Cluster:
    """The session's platform as seen by Singularity instance 2."""
    return cluster.with_instance(instances[0])


@pytest.fixture
async def singularity_2(
    instance_cluster: Cluster, nexus_settings: Settings
) -> AsyncIterator[Connected]:
    """Instance 2's client, with its inbox running."""
    async with connect(instance_cluster, nexus_settings, name="test-singularity-2") as connected:
        yield connected


@pytest.fixture
async def connected(
    instance_cluster: Cluster, nexus_settings: Settings
) -> AsyncIterator[Connected]:
    """Instance 2's client, as a task's runner uses it."""
    async with connect(instance_cluster, nexus_settings, name="t-task") as opened:
        yield opened


@pytest.fixture
async def genesis(nexus_settings: Settings, cluster: Cluster) -> AsyncIterator[RunningGenesis]:
    """A Genesis worker for the tasks' tests (experiments, commands in workspaces)."""
    require_bwrap()
    async with RunningGenesis(nexus_settings, cluster) as running:
        yield running
