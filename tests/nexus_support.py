"""Helpers of the Nexus tests: a Nexus service running in the background, and waiting for a
message on a queue."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from singularity.config import Settings
from singularity.nexus.service import Nexus, NexusParts
from singularity.nexus.token import ui_token
from singularity.postgres.cluster import Cluster
from singularity.service_context import ServiceContext


class RunningNexus:
    """A Nexus service in the background, with its web UI on a free port."""

    def __init__(self, settings: Settings, cluster: Cluster) -> None:
        self.settings = settings
        self.service = Nexus(port=0)
        self.stop = asyncio.Event()
        self.context = ServiceContext(settings, cluster)

    @property
    def parts(self) -> NexusParts:
        assert self.service.parts is not None
        return self.service.parts

    @property
    def url(self) -> str:
        assert self.parts.web is not None
        return f"http://127.0.0.1:{self.parts.web.port}"

    @property
    def token(self) -> str:
        return ui_token(self.settings)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An API client that sends the token."""
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10, **kwargs)

    async def __aenter__(self) -> RunningNexus:
        self.task = asyncio.create_task(self.service.run(self.context, self.stop))
        ready = asyncio.create_task(self.service.ready.wait())
        await asyncio.wait({self.task, ready}, timeout=60, return_when="FIRST_COMPLETED")
        if self.task.done():
            self.task.result()  # raise what stopped it
        assert ready.done(), "nexus did not start"
        await asyncio.wait_for(self.parts.events.listening.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


async def wait_for_message(
    pool: AsyncConnectionPool, queue: str, seconds: float = 15.0, **match: Any
) -> dict[str, Any]:
    """The first message of `queue` whose fields equal `match` (left in place)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        async with pool.connection() as conn:
            rows = await (
                await conn.execute(f"SELECT message FROM pgmq.q_{queue} ORDER BY msg_id")
            ).fetchall()
        for (body,) in rows:
            if all(body.get(k) == v for k, v in match.items()):
                return dict(body)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no message {match} on {queue}")
        await asyncio.sleep(0.03)
