"""The health and metrics server of one process: `/healthz`, `/livez` and `/metrics`.

One per process, beside its services (`run_services` starts it): `singularity run X` serves
X's health, `singularity up` every service's. A port already in use costs the metrics, never
the services: one `metrics_unavailable` line, and the services run on.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final, TypeVar

import structlog
import uvicorn
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.process_collector import ProcessCollector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from singularity.observability.metrics import COLLECTORS
from singularity.observability.probes import Cached, Unreachable, answers, depths, pending_approvals
from singularity.postgres.topology import Database, Role, service_role
from singularity.serving import InLoopServer, listen
from singularity.shared_queue.metrics import QueueDepth

if TYPE_CHECKING:
    from singularity.service_context import Service, ServiceContext

__all__ = ["RUNNING", "STARTING", "STOPPED", "Observability", "open_observability"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

RUNNING: Final = "running"
STARTING: Final = "starting"
STOPPED: Final = "stopped"


def open_observability(
    context: ServiceContext, services: Sequence[Service]
) -> Observability | None:
    """The server SINGULARITY_METRICS_HOST/PORT ask for, listening; None when turned off (a
    negative port) or when the port cannot be had (logged: the services run without it)."""
    settings = context.settings
    host, port = settings.singularity_metrics_host, settings.singularity_metrics_port
    if port < 0:
        return None
    try:
        sock = listen(host, port, backlog=128)
    except OSError as exc:
        log.warning(
            "metrics_unavailable",
            address=f"{host}:{port}",
            error=exc.strerror or str(exc),
            hint="set SINGULARITY_METRICS_PORT to a free port (0: any, -1: none)",
        )
        return None
    return Observability(context, services, sock)


@dataclass(frozen=True)
class _Scrape:
    """What the databases said for one scrape (None: not asked, or no answer)."""

    depths: list[QueueDepth] | None = None
    pending_approvals: int | None = None


class Observability:
    """Health and metrics of the services of one process, as an ASGI app (and its server)."""

    def __init__(
        self,
        context: ServiceContext,
        services: Sequence[Service],
        sock: socket.socket | None = None,
    ) -> None:
        self.socket = sock
        self.address = _address(sock) if sock else None  # e.g. http://127.0.0.1:9464
        self._services = list(services)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stop: asyncio.Event | None = None
        cluster = context.cluster
        roles = {s.name: service_role(s.name) for s in self._services}
        # Each service's database check logs in as that service, as its own connections do
        # (one without a role of its own, the NATS bridge, logs in as singularity).
        self._checks = {
            name: Cached(partial(answers, cluster.service(role, Database.SHARED_QUEUE)))
            for name, role in roles.items()
        }
        self._depths: Cached[list[QueueDepth] | None] | None = None
        if roles:
            bus = cluster.service(next(iter(roles.values())), Database.SHARED_QUEUE)
            self._depths = Cached(_logged(partial(depths, bus), "queue depths"))
        self._pending: Cached[int | None] | None = None
        if Role.NEXUS.value in roles:
            nexus = cluster.service(Role.NEXUS, Database.NEXUS)
            self._pending = Cached(_logged(partial(pending_approvals, nexus), "approvals"))
        self._scrape = _ScrapeCollector(self)
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in COLLECTORS:
            self.registry.register(collector)
        self.registry.register(self._scrape)
        ProcessCollector(registry=self.registry)
        self.app = Starlette(
            routes=[
                Route("/healthz", self._healthz),
                Route("/livez", self._livez),
                Route("/metrics", self._metrics),
            ]
        )

    # -- state ---------------------------------------------------------------------------

    def states(self) -> dict[str, str]:
        """Each service's state, as its task and its `ready` event (if it has one) tell."""
        return {service.name: self._state(service) for service in self._services}

    def _state(self, service: Service) -> str:
        task = self._tasks.get(service.name)
        if task is None:
            return STARTING
        if task.done() or (self._stop is not None and self._stop.is_set()):
            return STOPPED
        ready = getattr(service, "ready", None)
        if isinstance(ready, asyncio.Event) and not ready.is_set():
            return STARTING
        return RUNNING

    async def health(self) -> tuple[bool, dict[str, str]]:
        """Whether every service runs and reaches the bus; and each one's state."""
        states = self.states()
        checked = [name for name, state in states.items() if state == RUNNING]
        checked = [name for name in checked if name in self._checks]
        problems = await asyncio.gather(*(self._checks[name].get() for name in checked))
        for name, problem in zip(checked, problems, strict=True):
            if problem is not None:
                states[name] = f"database unreachable: {problem.reason}"
        return bool(states) and all(s == RUNNING for s in states.values()), states

    async def scrape(self) -> bytes:
        """The Prometheus text of every metric of the process."""
        latest = _Scrape(
            depths=await self._depths.get() if self._depths else None,
            pending_approvals=await self._pending.get() if self._pending else None,
        )
        # No await between setting and rendering: a concurrent scrape cannot mix its answer in.
        self._scrape.latest = latest
        return generate_latest(self.registry)

    # -- HTTP ----------------------------------------------------------------------------

    async def _healthz(self, request: Request) -> JSONResponse:
        ok, services = await self.health()
        body = {"status": "ok" if ok else "unavailable", "services": services}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def _livez(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def _metrics(self, request: Request) -> Response:
        # The classic text format: every Prometheus (2.x and 3.x) and agent reads it.
        return Response(await self.scrape(), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    async def serve(self, tasks: Mapping[asyncio.Task[None], Service], stop: asyncio.Event) -> None:
        """Serve until `stop` and the services' `tasks` have ended; a failure of the server
        is logged, and the services run on."""
        self._tasks = {service.name: task for task, service in tasks.items()}
        self._stop = stop
        if self.socket is None:
            return
        server = InLoopServer(
            uvicorn.Config(
                self.app, log_config=None, log_level="warning", access_log=False, lifespan="off"
            )
        )
        serving = asyncio.create_task(server.serve(sockets=[self.socket]), name="metrics:http")
        log.info("metrics_serving", address=self.address)
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            # While the services drain, /healthz says they stopped: a readiness probe takes
            # the process out of rotation before it is gone.
            if not serving.done() and self._tasks:
                await asyncio.wait(self._tasks.values())
        finally:
            server.should_exit = True
            stopping.cancel()
            try:
                await serving
            except Exception as exc:  # the services matter more than their metrics
                log.error("metrics_failed", error=str(exc))
            self.socket.close()


class _ScrapeCollector:
    """The figures read at scrape time: services' state, queues, pending approvals."""

    def __init__(self, owner: Observability) -> None:
        self._owner = owner
        self.latest = _Scrape()

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "singularity_service_up", "1 while the service runs, else 0.", labels=["service"]
        )
        for name, state in self._owner.states().items():
            up.add_metric([name], 1 if state == RUNNING else 0)
        yield up
        if self.latest.depths is not None:
            depth = GaugeMetricFamily(
                "singularity_queue_depth", "Messages in the queue.", labels=["queue"]
            )
            age = GaugeMetricFamily(
                "singularity_queue_oldest_age_seconds",
                "Age of the queue's oldest message (0 when it is empty).",
                labels=["queue"],
            )
            for queue in self.latest.depths:
                depth.add_metric([queue.queue], queue.length)
                age.add_metric([queue.queue], queue.oldest_age_s or 0)
            yield depth
            yield age
        if self.latest.pending_approvals is not None:
            yield GaugeMetricFamily(
                "singularity_pending_approvals",
                "Approvals waiting for a human (in the nexus database: every Nexus says the same).",
                value=self.latest.pending_approvals,
            )


def _logged(
    fetch: Callable[[], Awaitable[T | Unreachable]], what: str
) -> Callable[[], Awaitable[T | None]]:
    """`fetch`, answering None (logged) when the database gave no answer."""

    async def fetch_logged() -> T | None:
        result = await fetch()
        if isinstance(result, Unreachable):
            log.warning("metrics_read_failed", what=what, error=result.reason)
            return None
        return result

    return fetch_logged


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
