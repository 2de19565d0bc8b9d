"""The Nexus service: the LLM router, the human-in-the-loop consumers and the web UI."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.metadata import version

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from singularity.config import Settings
from singularity.errors import DatabaseUnavailable
from singularity.nexus.fleet import Fleet
from singularity.nexus.hitl import Hitl
from singularity.nexus.hitl_events import HitlEvents
from singularity.nexus.llm_client import load_litellm
from singularity.nexus.llm_handler import LlmHandler
from singularity.nexus.models_view import describe_models
from singularity.nexus.providers import Providers
from singularity.nexus.registry import load_registry
from singularity.nexus.router import Router
from singularity.nexus.token import ui_token
from singularity.nexus.web.app import WebContext, create_app
from singularity.nexus.web.auth import Access
from singularity.nexus.web.server import WebServer, bind
from singularity.postgres.connect import describe_error, open_pool
from singularity.postgres.endpoint import Endpoint
from singularity.postgres.topology import Database, Role
from singularity.service_context import ServiceContext, run_tasks
from singularity.shared_queue import (
    ApprovalRequest,
    Bus,
    LlmRequest,
    QuestionRequest,
    ReplyTargets,
    TaskEvent,
    consumer_options,
    open_bus,
)
from singularity.shared_queue.install import require_bus

__all__ = ["Nexus", "NexusParts", "ui_address"]

log = structlog.get_logger(__name__)

_SWEEP_EVERY_S = 1.0


def ui_address(settings: Settings, port: int | None = None) -> str:
    """Where reviewers open the UI (without the token)."""
    if settings.nexus_public_url:
        return settings.nexus_public_url.rstrip("/")
    host = settings.nexus_host
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port or settings.port}"


@dataclass
class NexusParts:
    """The pieces of a running Nexus, for whoever needs to reach inside (the CLI, tests)."""

    router: Router
    hitl: Hitl
    events: HitlEvents
    bus: Bus
    pool: AsyncConnectionPool
    web: WebServer | None


class Nexus:
    """One Nexus process; run as many as the load needs, on any hosts."""

    name = "nexus"

    def __init__(self, *, web: bool | None = None, port: int | None = None) -> None:
        self.web = web  # None: as NEXUS_WEB says
        self.port = port
        self.parts: NexusParts | None = None
        self.ready = asyncio.Event()

    async def run(self, context: ServiceContext, stop: asyncio.Event) -> None:
        settings = context.settings
        cluster = context.cluster
        bus_endpoint = cluster.service(Role.NEXUS, Database.SHARED_QUEUE)
        await require_bus(bus_endpoint)
        router = Router(load_registry(settings), Providers(settings), settings)
        serve_web = settings.nexus_web if self.web is None else self.web
        access = Access(ui_token(settings)) if serve_web else None
        port = settings.port if self.port is None else self.port
        sock = bind(settings.nexus_host, port) if serve_web else None  # a taken port fails first
        # LiteLLM takes seconds to import: pay that before the first request, not during it.
        await asyncio.to_thread(load_litellm)
        # Its hundreds of thousands of long-lived objects would otherwise be walked by every
        # full garbage collection, pausing the event loop for tens of milliseconds.
        gc.freeze()
        concurrency = settings.nexus_llm_concurrency
        async with (
            open_bus(bus_endpoint, settings, name="nexus-bus", max_connections=16) as bus,
            _pool(cluster.service(Role.NEXUS, Database.NEXUS), concurrency) as pool,
        ):
            targets = ReplyTargets(bus.pool)
            llm = LlmHandler(router, pool, targets, settings)
            hitl = Hitl(pool, bus.publisher, targets, settings)
            events = HitlEvents(cluster.service(Role.NEXUS, Database.NEXUS), hitl)
            web = None
            if access is not None and sock is not None:
                app = create_app(
                    WebContext(
                        hitl=hitl,
                        events=events,
                        nexus_pool=pool,
                        bus_pool=bus.pool,
                        access=access,
                        models=lambda: describe_models(router.registry, router.providers),
                        version=version("singularity"),
                        secure_cookie=(settings.nexus_public_url or "").startswith("https://"),
                        max_body_bytes=settings.nexus_max_body_bytes,
                    )
                )
                web = WebServer(app, sock)
            self.parts = NexusParts(router, hitl, events, bus, pool, web)
            options = consumer_options(settings)
            consumers = [
                bus.consumer(
                    "llm_requests",
                    LlmRequest,
                    llm,
                    options=consumer_options(settings, concurrency=concurrency),
                    on_invalid=llm.on_invalid,
                ),
                bus.consumer(
                    "approval_requests", ApprovalRequest, hitl.take_approval, options=options
                ),
                bus.consumer(
                    "question_requests", QuestionRequest, hitl.take_question, options=options
                ),
                bus.consumer("task_events", TaskEvent, Fleet(pool).take_event, options=options),
            ]
            tasks = [asyncio.create_task(c.run(stop), name=f"consume:{c.queue}") for c in consumers]
            tasks.append(asyncio.create_task(events.run(stop), name="nexus:events"))
            tasks.append(asyncio.create_task(self._sweep(hitl, stop), name="nexus:sweep"))
            if web is not None:
                tasks.append(asyncio.create_task(web.run(stop), name="nexus:web"))
            log.info(
                "nexus_started",
                models=len(router.registry.models),
                providers=router.providers.configured() or "none",
                web=ui_address(settings, web.port) if web else "off",
            )
            self.ready.set()
            try:
                await run_tasks(tasks, stop)
            finally:
                self.parts = None
        log.info("nexus_stopped")

    async def _sweep(self, hitl: Hitl, stop: asyncio.Event) -> None:
        """Expire overdue requests, and publish decisions whose answer did not go out."""
        loop = asyncio.get_running_loop()
        next_republish = 0.0
        while not stop.is_set():
            try:
                await hitl.expire_overdue()
                if loop.time() >= next_republish:
                    await hitl.publish_unpublished()
                    next_republish = loop.time() + 10.0
            except (psycopg.Error, DatabaseUnavailable) as exc:
                log.warning("hitl_sweep_failed", error=describe_error(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _SWEEP_EVERY_S)


@contextlib.asynccontextmanager
async def _pool(endpoint: Endpoint, concurrency: int) -> AsyncIterator[AsyncConnectionPool]:
    # Each routed request takes a connection twice, briefly, around a provider call that
    # lasts far longer: a quarter of the concurrency is plenty.
    pool = await open_pool(
        endpoint, name="nexus-db", min_size=2, max_size=max(4, min(32, concurrency // 4))
    )
    try:
        yield pool
    finally:
        await pool.close()
