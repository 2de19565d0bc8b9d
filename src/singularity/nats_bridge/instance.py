"""The bridge's own reply queues: a Singularity instance's, checked and held while it runs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from singularity.errors import SingularityError
from singularity.nats_bridge.routes import ROUTES
from singularity.nats_bridge.sql import QUERIES
from singularity.postgres.connect import async_connection
from singularity.postgres.endpoint import Endpoint
from singularity.shared_queue.catalog import instance_queues
from singularity.shared_queue.install import missing_queues, require_bus

__all__ = ["claim_instance", "reply_queues"]


def reply_queues(instance: int) -> list[str]:
    """The queues the bridge reads its answers from."""
    return [route.reply_to(instance) for route in ROUTES]


@contextlib.asynccontextmanager
async def claim_instance(endpoint: Endpoint, instance: int) -> AsyncIterator[None]:
    """Fail with one line naming the fix unless the bus and the instance's reply queues exist
    and no other bridge uses this instance; then hold the instance until the block ends."""
    await require_bus(endpoint)
    wanted = set(reply_queues(instance))
    specs = [spec for spec in instance_queues(instance) if spec.name in wanted]
    async with async_connection(endpoint) as conn:
        missing = await missing_queues(conn, specs)
        if missing:
            raise SingularityError(
                f"the NATS bridge's instance {instance} is not set up (missing queue "
                f"{missing[0]!r}): run `singularity db init --instance {instance}` once"
            )
        row = await (
            await conn.execute(QUERIES["instance_lock"], {"instance": instance})
        ).fetchone()
        if not (row and row[0]):
            raise SingularityError(
                f"another NATS bridge already runs as instance {instance} on this bus: give "
                "each bridge its own NATS_BRIDGE_INSTANCE (and `singularity db init --instance N`)"
            )
        yield  # the lock lives as long as this connection
