"""What every service is: the protocol, what it is given, and how several run side by side.

Services import this module, never `singularity.services` (the registry imports them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from singularity.config import Settings
from singularity.observability.server import Observability, open_observability
from singularity.postgres.cluster import Cluster
from singularity.postgres.topology import Database, service_role
from singularity.presence import hold_presence

__all__ = ["Service", "ServiceContext", "run_services", "run_tasks"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ServiceContext:
    """What every service is given: the settings, where the databases are, and whether it
    runs alone (`singularity run SERVICE`) or beside the others (`singularity up`)."""

    settings: Settings
    cluster: Cluster
    alone: bool = False


class Service(Protocol):
    name: str

    async def run(self, context: ServiceContext, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then finish cleanly."""
        ...


async def run_services(
    services: Sequence[Service],
    context: ServiceContext,
    stop: asyncio.Event,
    *,
    observability: Observability | None = None,
) -> None:
    """Run services side by side until `stop`; if one fails, stop the others and re-raise.

    Beside them runs the process's health and metrics server: `observability`, or by default
    the one SINGULARITY_METRICS_PORT asks for."""
    observer = observability or open_observability(context, services)
    tasks = {
        asyncio.create_task(_present(service, context, stop), name=f"service:{service.name}"): (
            service
        )
        for service in services
    }
    beside = [asyncio.create_task(observer.serve(tasks, stop), name="metrics")] if observer else []
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                log.error("service_failed", service=tasks[task].name, error=str(task.exception()))
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, *beside, return_exceptions=True)


async def _present(service: Service, context: ServiceContext, stop: asyncio.Event) -> None:
    """Run the service while it is seen running (`singularity status`), as its own role."""
    endpoint = context.cluster.service(service_role(service.name), Database.SHARED_QUEUE)
    async with hold_presence(endpoint, service.name):
        await service.run(context, stop)


async def run_tasks(tasks: Sequence[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Wait for a service's background tasks; if one fails, stop the others and re-raise."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
