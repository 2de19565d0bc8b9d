"""The services `singularity run` and `singularity up` can start, and how they are run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from singularity.config import Settings
from singularity.errors import UsageError
from singularity.postgres.cluster import Cluster

__all__ = ["SERVICES", "Service", "ServiceContext", "resolve_services", "run_services"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ServiceContext:
    """What every service is given: the settings and where the databases are."""

    settings: Settings
    cluster: Cluster


class Service(Protocol):
    name: str

    async def run(self, context: ServiceContext, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then finish cleanly."""
        ...


def _centralcloud() -> Service:
    from singularity.centralcloud.service import CentralCloud

    return CentralCloud()


# Later services register here; `up` runs all of them.
SERVICES: dict[str, Callable[[], Service]] = {
    "centralcloud": _centralcloud,
}


def resolve_services(names: Sequence[str]) -> list[Service]:
    """Services by name, or a UsageError that lists the valid names."""
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        raise UsageError(
            f"unknown service {unknown[0]!r}; choose one of: {', '.join(sorted(SERVICES))}"
        )
    return [SERVICES[name]() for name in names]


async def run_services(
    services: Sequence[Service], context: ServiceContext, stop: asyncio.Event
) -> None:
    """Run services side by side until `stop`; if one fails, stop the others and re-raise."""
    tasks = {
        asyncio.create_task(service.run(context, stop), name=f"service:{service.name}"): service
        for service in services
    }
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                log.error("service_failed", service=tasks[task].name, error=str(task.exception()))
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
