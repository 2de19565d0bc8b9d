"""CentralCloud's loop: the owner's work on the bus (queues and grants repaired, archives pruned),
a report of the bus's state, and learning from the archives."""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import structlog

from singularity.bootstrap import repair_bus
from singularity.centralcloud.learning import Learner, LearningCounts
from singularity.centralcloud.pools import archive_reader, centralcloud_store
from singularity.errors import DatabaseUnavailable, SingularityError
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection, describe_error
from singularity.postgres.endpoint import Endpoint
from singularity.postgres.topology import Database, Role
from singularity.service_context import ServiceContext
from singularity.shared_queue import (
    list_queues,
    prune_archives,
    prune_sent_once,
    prune_workspaces,
    queue_metrics,
)
from singularity.shared_queue.install import require_bus

__all__ = ["CentralCloud"]

log = structlog.get_logger(__name__)


class CentralCloud:
    """The owner of the bus."""

    name = "centralcloud"

    def __init__(
        self,
        retention_every_s: float = 3600.0,
        report_every_s: float = 60.0,
        learn_every_s: float = 300.0,
        learn_settle_s: float = 30.0,
        repair_every_s: float = 3600.0,
    ) -> None:
        self.repair_every_s = repair_every_s
        self.retention_every_s = retention_every_s
        self.report_every_s = report_every_s
        self.learn_every_s = learn_every_s
        self.learn_settle_s = learn_settle_s

    async def run(self, context: ServiceContext, stop: asyncio.Event) -> None:
        endpoint = context.cluster.service(Role.CENTRALCLOUD, Database.SHARED_QUEUE)
        days = context.settings.shared_queue_retention_days
        await require_bus(endpoint)
        async with (
            archive_reader(context.cluster) as reader,
            centralcloud_store(context.cluster) as store,
        ):
            learner = Learner(reader, store, settle_s=self.learn_settle_s)
            log.info("centralcloud_started", retention_days=days, bus=str(endpoint))
            await self._loop(endpoint, days, learner, stop, context.cluster)
        log.info("centralcloud_stopped")

    async def _loop(
        self,
        endpoint: Endpoint,
        days: int,
        learner: Learner,
        stop: asyncio.Event,
        cluster: Cluster,
    ) -> None:
        loop = asyncio.get_running_loop()
        next_prune = next_learn = 0.0
        # `db init` (or `up`) has just done the owner's work; repeat it on schedule.
        next_repair = loop.time() + self.repair_every_s
        while not stop.is_set():
            if loop.time() >= next_repair:
                await self.repair(cluster)
                next_repair = loop.time() + self.repair_every_s
            try:
                async with async_connection(endpoint) as conn:
                    if loop.time() >= next_prune:
                        await self.prune(conn, days)
                        next_prune = loop.time() + self.retention_every_s
                    await self.report(conn)
            except (psycopg.Error, DatabaseUnavailable) as exc:
                log.warning("centralcloud_cycle_failed", error=describe_error(exc))
            if loop.time() >= next_learn and not stop.is_set():
                await self.learn(learner, stop)
                next_learn = loop.time() + self.learn_every_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.report_every_s)

    async def repair(self, cluster: Cluster) -> None:
        """Re-create missing queues and re-apply the access matrix, as the administrator; on
        a host without the administrator's credentials this is logged and skipped."""
        try:
            done = await repair_bus(cluster)
        except (psycopg.Error, SingularityError) as exc:
            log.warning("bus_repair_skipped", reason=describe_error(exc))
            return
        log.info("bus_repaired", created_queues=done.created_queues)

    async def prune(self, conn: psycopg.AsyncConnection, days: int) -> dict[str, int]:
        pruned = await prune_archives(conn, await list_queues(conn), days=days)
        await prune_sent_once(conn, days=days)
        await prune_workspaces(conn, days=days)
        log.info("retention_done", pruned=sum(pruned.values()), older_than_days=days)
        return pruned

    async def report(self, conn: psycopg.AsyncConnection) -> None:
        metrics = await queue_metrics(conn)
        waiting = {m.queue: m.length for m in metrics if m.length}
        dead = {m.queue: m.length for m in metrics if m.queue.endswith("_dlq") and m.length}
        log.info("bus_status", queues=len(metrics), waiting=waiting, dead_letters=dead)

    async def learn(self, learner: Learner, stop: asyncio.Event | None = None) -> LearningCounts:
        """One learning run over what is new in the archives; a failure is logged, not raised."""
        try:
            counts = await learner.learn(stop)
        except (psycopg.Error, DatabaseUnavailable) as exc:
            log.warning("learning_failed", error=describe_error(exc))
            return LearningCounts()
        log.info("learning_done", **counts.as_dict())
        return counts
