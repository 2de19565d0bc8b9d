"""Helpers of the observability tests: services run by `run_services` with their health and
metrics server on a free port, and reading the Prometheus text."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
from prometheus_client.parser import text_string_to_metric_families

from helpers import eventually, holds
from singularity.config import Settings
from singularity.observability.server import RUNNING, Observability, open_observability
from singularity.postgres.cluster import Cluster
from singularity.service_context import Service, ServiceContext, run_services
from singularity.shared_queue.waiting import race


class Idle:
    """A service that does nothing until stopped; it becomes ready at once unless told not
    to, and ends early when `end` is set."""

    def __init__(self, name: str, *, becomes_ready: bool = True) -> None:
        self.name = name
        self.ready = asyncio.Event()
        self.end = asyncio.Event()
        self._becomes_ready = becomes_ready

    async def run(self, context: ServiceContext, stop: asyncio.Event) -> None:
        if self._becomes_ready:
            self.ready.set()
        await race(stop.wait(), self.end.wait(), seconds=3600)


class Served:
    """Services under `run_services`, their server on a free port, for an `async with` block."""

    def __init__(self, services: Sequence[Service], settings: Settings, cluster: Cluster) -> None:
        self.services = list(services)
        self.context = ServiceContext(
            settings.model_copy(update={"singularity_metrics_port": 0}), cluster
        )
        self.stop = asyncio.Event()
        observability = open_observability(self.context, self.services)
        assert observability is not None
        self.observability: Observability = observability

    @property
    def address(self) -> str:
        assert self.observability.address is not None
        return self.observability.address

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.address, timeout=10) as client:
            return await client.get(path)

    async def metrics(self) -> str:
        response = await self.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return response.text

    def start(self) -> None:
        self.task = asyncio.create_task(
            run_services(self.services, self.context, self.stop, observability=self.observability)
        )

    async def __aenter__(self) -> Served:
        self.start()

        def started() -> bool:
            states = self.observability.states().values()
            return self.task.done() or all(state == RUNNING for state in states)

        await eventually(holds(started), seconds=60)
        if self.task.done():
            self.task.result()  # raise what stopped it
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text, parsed by prometheus_client's own parser (which
    fails on anything that is not the format)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    """One sample's value, or None when there is no such series."""
    return samples(text).get((name, frozenset(labels.items())))
