"""The bridge's own reply queues: a Singularity instance's, checked and held while it runs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from singularity.errors import SingularityError
from singularity.nats_bridge.routes import ROUTES
from singularity.nats_bridge.sql import QUERIES
from singularity.postgres.connect import async_connection
from singularity.postgres.endpoint import Endpoint
from singularity.shared_queue.install import require_bus, require_instance

__all__ = ["claim_instance", "reply_queues"]


def reply_queues(instance: int) -> list[str]:
    """The queues the bridge reads its answers from."""
    return [route.reply_to(instance) for route in ROUTES]


@contextlib.asynccontextmanager
async def claim_instance(endpoint: Endpoint, instance: int) -> AsyncIterator[None]:
    """Fail with one line naming the fix unless the bus and the instance's reply queues exist
    and no other bridge uses this instance; then hold the instance until the block ends."""
    await require_bus(endpoint)
    async with async_connection(endpoint) as conn:
        await require_instance(conn, instance, "the NATS bridge's instance", reply_queues(instance))
        row = await (
            await conn.execute(QUERIES["instance_lock"], {"instance": instance})
        ).fetchone()
        if not (row and row[0]):
            raise SingularityError(
                f"another NATS bridge already runs as instance {instance} on this bus: give "
                "each bridge its own NATS_BRIDGE_INSTANCE (and `singularity db init --instance N`)"
            )
        yield  # the lock lives as long as this connection
