"""Helpers of the NATS bridge tests: a bridge running in the background."""

from __future__ import annotations

import asyncio

from singularity.config import Settings
from singularity.nats_bridge import NatsBridge
from singularity.nats_bridge.pending import Pending
from singularity.postgres.cluster import Cluster
from singularity.service_context import ServiceContext


class RunningBridge:
    """A NATS bridge in the background for the length of an `async with` block."""

    def __init__(self, settings: Settings, cluster: Cluster) -> None:
        self.settings = settings
        self.service = NatsBridge()
        self.stop = asyncio.Event()
        self.context = ServiceContext(settings, cluster)

    def subject(self, name: str) -> str:
        return self.settings.nats_bridge_subject_prefix + name

    @property
    def pending(self) -> Pending:
        assert self.service.pending is not None
        return self.service.pending

    async def __aenter__(self) -> RunningBridge:
        self.task = asyncio.create_task(self.service.run(self.context, self.stop))
        ready = asyncio.create_task(self.service.ready.wait())
        await asyncio.wait({self.task, ready}, timeout=30, return_when="FIRST_COMPLETED")
        if self.task.done():
            self.task.result()  # raise what stopped it
        assert ready.done(), "the bridge did not start"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)
