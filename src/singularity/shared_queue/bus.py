"""A service's handle on the bus: a pool as its own role, the wake-up listener, a publisher."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from singularity.config import Settings
from singularity.postgres.connect import open_pool
from singularity.postgres.endpoint import Endpoint
from singularity.shared_queue.consumer import Consumer
from singularity.shared_queue.delivery import ConsumerOptions, Handler, InvalidHandler
from singularity.shared_queue.listener import Listener
from singularity.shared_queue.publisher import Publisher

__all__ = ["Bus", "consumer_options", "open_bus"]

M = TypeVar("M", bound=BaseModel)


def consumer_options(settings: Settings, **overrides: object) -> ConsumerOptions:
    """Consumer options with SHARED_QUEUE_POLL_MS, SHARED_QUEUE_BATCH_SIZE and
    SHARED_QUEUE_MAX_MESSAGE_BYTES applied."""
    values: dict[str, object] = {
        "poll_interval_s": settings.shared_queue_poll_ms / 1000,
        "batch_size": settings.shared_queue_batch_size,
        "max_message_bytes": settings.shared_queue_max_message_bytes,
    }
    values.update(overrides)
    return ConsumerOptions(**values)  # type: ignore[arg-type]


class Bus:
    """Publishing and consuming as one role."""

    def __init__(self, pool: AsyncConnectionPool, listener: Listener, settings: Settings) -> None:
        self.pool = pool
        self.listener = listener
        self.publisher = Publisher(pool)
        self.settings = settings

    def consumer(
        self,
        queue: str,
        model: type[M],
        handler: Handler[M],
        *,
        options: ConsumerOptions | None = None,
        on_invalid: InvalidHandler | None = None,
    ) -> Consumer[M]:
        return Consumer(
            self.pool,
            queue,
            model,
            handler,
            options=options or consumer_options(self.settings),
            listener=self.listener,
            on_invalid=on_invalid,
        )


@contextlib.asynccontextmanager
async def open_bus(
    endpoint: Endpoint, settings: Settings, *, name: str, max_connections: int = 8
) -> AsyncIterator[Bus]:
    """Open the pool and start the listener; both end when the block ends."""
    pool = await open_pool(endpoint, name=name, min_size=2, max_size=max_connections)
    listener = Listener(endpoint)
    stop = asyncio.Event()
    listening = asyncio.create_task(listener.run(stop), name=f"listen:{name}")
    try:
        yield Bus(pool, listener, settings)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await pool.close()
