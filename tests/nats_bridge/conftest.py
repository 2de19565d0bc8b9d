"""Fixtures of the NATS bridge tests: the machine's nats-server, a test-only bridge instance on
the session's bus, and a bridge running in the background on subjects of its own."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import nats
import pytest
from nats.aio.client import Client as NatsClient
from psycopg_pool import AsyncConnectionPool

from helpers import count
from nats_bridge.support import RunningBridge
from singularity.bootstrap import bootstrap
from singularity.config import Settings
from singularity.nats_bridge.instance import reply_queues
from singularity.postgres.cluster import Cluster

NATS_URL = os.environ.get("SINGULARITY_TEST_NATS_URL", "nats://127.0.0.1:4222")
# Not 900 (the default, left for the test that it is missing); its queues are these tests' own.
INSTANCE = 901


async def _reachable(url: str) -> str | None:
    """Why no NATS server answers at `url`, or None. (A plain socket: the client's own first
    connection keeps retrying for minutes.)"""
    parts = urlsplit(url)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 4222), 3
        )
    except (OSError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        greeting = await asyncio.wait_for(reader.readline(), 3)
    except TimeoutError:
        greeting = b""
    finally:
        writer.close()
    return None if greeting.startswith(b"INFO ") else f"not a NATS server: {greeting[:40]!r}"


@pytest.fixture(scope="session")
def nats_url() -> str:
    problem = asyncio.run(_reachable(NATS_URL))
    if problem is not None:
        message = f"no nats-server at {NATS_URL} ({problem})"
        if os.environ.get("SINGULARITY_REQUIRE_NATS") == "1":
            pytest.fail(message + " and SINGULARITY_REQUIRE_NATS=1")
        pytest.skip(message + "; start one (nats-server -js) or set SINGULARITY_TEST_NATS_URL")
    return NATS_URL


@pytest.fixture(scope="session")
def bridge_instance(cluster: Cluster, vector_available: bool) -> int:
    """The bridge's reply queues, made as `singularity db init --instance 901` makes them."""
    asyncio.run(bootstrap(cluster, instances=(INSTANCE,), require_vector=vector_available))
    return INSTANCE


@pytest.fixture
def bridge_settings(nexus_settings: Settings, nats_url: str, bridge_instance: int) -> Settings:
    """The settings of a bridge alone on its own subjects (`t1a2b3c.llm.request`, ...)."""
    return nexus_settings.model_copy(
        update={
            "nats_url": nats_url,
            "nats_bridge_instance": bridge_instance,
            "nats_bridge_subject_prefix": f"t{uuid.uuid4().hex[:8]}.",
            "nats_bridge_timeout_s": 30.0,
        }
    )


@pytest.fixture
async def bridge(
    bridge_settings: Settings, cluster: Cluster, bus_pool: AsyncConnectionPool
) -> AsyncIterator[RunningBridge]:
    async with RunningBridge(bridge_settings, cluster) as running:
        yield running
    # Every answer a test caused was taken: nothing is left for the next test to meet.
    for queue in reply_queues(bridge_settings.nats_bridge_instance):
        for table in (f"q_{queue}", f"q_{queue}_dlq"):
            assert await count(bus_pool, table) == 0, table


@pytest.fixture
async def requester(nats_url: str) -> AsyncIterator[NatsClient]:
    """The old system's side: a plain NATS client."""
    client = await nats.connect(nats_url)
    yield client
    await client.close()
