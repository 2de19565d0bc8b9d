"""Opening one Singularity instance's view of the platform: its database, the bus, and the
inbox that brings its answers back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from singularity.config import Settings
from singularity.orchestrator.client import PlatformClient
from singularity.orchestrator.inbox import inbox_consumers
from singularity.orchestrator.store import SingularityStore
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, open_pool
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import Bus, open_bus
from singularity.shared_queue.install import require_bus, require_instance

__all__ = ["Connected", "connect", "open_store"]


@dataclass(frozen=True)
class Connected:
    """An instance's client, store and bus while `connect()` is open."""

    client: PlatformClient
    store: SingularityStore
    bus: Bus
    cluster: Cluster


@contextlib.asynccontextmanager
async def open_store(
    cluster: Cluster, *, name: str = "singularity", max_size: int = 8
) -> AsyncIterator[SingularityStore]:
    """The instance's database alone (for commands that only read it), once the bus and the
    instance's reply queues are known to be set up."""
    await require_bus(cluster.service(Role.SINGULARITY, Database.SHARED_QUEUE))
    await _require_instance(cluster)
    pool = await open_pool(
        cluster.service(Role.SINGULARITY, Database.SINGULARITY),
        name=f"{name}-db",
        max_size=max_size,
    )
    try:
        yield SingularityStore(pool)
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def connect(
    cluster: Cluster, settings: Settings, *, name: str = "singularity", inbox: bool = True
) -> AsyncIterator[Connected]:
    """The instance's client; with `inbox`, its answers are consumed while this is open."""
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(cluster, name=name))
        bus = await stack.enter_async_context(
            open_bus(
                cluster.service(Role.SINGULARITY, Database.SHARED_QUEUE),
                settings,
                name=f"{name}-bus",
                max_connections=8,
            )
        )
        client = PlatformClient(store, bus.publisher, settings, cluster.instance)
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        if inbox:
            tasks = [
                asyncio.create_task(consumer.run(stop), name=f"inbox:{consumer.queue}")
                for consumer in inbox_consumers(bus, store, client)
            ]
        try:
            yield Connected(client, store, bus, cluster)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _require_instance(cluster: Cluster) -> None:
    """Instance N > 1 needs its reply queues: say how to create them."""
    if cluster.instance == 1:
        return
    async with async_connection(cluster.service(Role.SINGULARITY, Database.SHARED_QUEUE)) as conn:
        await require_instance(conn, cluster.instance, "Singularity instance")
