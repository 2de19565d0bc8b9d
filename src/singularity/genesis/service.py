"""The Genesis service: the job and experiment consumers, around one sandbox."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from singularity.config import Settings
from singularity.errors import SingularityError
from singularity.genesis.environments import Environments
from singularity.genesis.experiments.handler import ExperimentHandler
from singularity.genesis.jobs.handler import JobHandler
from singularity.genesis.limits import DEFAULT_LIMITS
from singularity.genesis.sandbox import Sandbox, SandboxUnavailable
from singularity.genesis.store import GenesisStore
from singularity.genesis.workspaces.snapshots import Snapshots
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database, Role
from singularity.service_context import ServiceContext, run_tasks
from singularity.shared_queue import (
    Bus,
    Consumer,
    ExperimentRequest,
    JobRequest,
    ReplyTargets,
    consumer_options,
    open_bus,
)
from singularity.shared_queue.install import require_bus

__all__ = ["Genesis"]

log = structlog.get_logger(__name__)

# A job holds its delivery for up to its wall limit (the consumer's heartbeat extends the
# visibility meanwhile); experiments run a repository's tests twice.
_EXPERIMENT_CONCURRENCY = 1


class Genesis:
    """One Genesis worker; run as many as the load needs, on any hosts."""

    name = "genesis"

    def __init__(self, *, required: bool | None = None) -> None:
        # required: no sandbox is an error. By default that holds when Genesis runs alone
        # (`run genesis`); beside the others (`up`) it stays out of the way, consuming
        # nothing, so that the rest of the platform still runs.
        self.required = required
        self.ready = asyncio.Event()

    async def run(self, context: ServiceContext, stop: asyncio.Event) -> None:
        settings = context.settings
        cluster = context.cluster
        bus_endpoint = cluster.service(Role.GENESIS, Database.SHARED_QUEUE)
        await require_bus(bus_endpoint)
        required = context.alone if self.required is None else self.required
        sandbox = await self._sandbox(settings, required=required)
        if sandbox is None:
            await stop.wait()
            return
        concurrency = settings.genesis_concurrency
        async with contextlib.AsyncExitStack() as stack:
            bus = await stack.enter_async_context(
                open_bus(bus_endpoint, settings, name="genesis-bus", max_connections=8)
            )
            pool = await open_pool(
                cluster.service(Role.GENESIS, Database.GENESIS),
                name="genesis-db",
                max_size=max(2, min(16, concurrency + 1)),  # a run's bookkeeping beside the runs
            )
            stack.push_async_callback(pool.close)
            environments = None
            if not settings.genesis_unsafe_sandbox:  # environments need bubblewrap's isolation
                environments = Environments.from_settings(settings)
                stack.push_async_callback(environments.aclose)
            consumers = _consumers(bus, GenesisStore(pool), sandbox, settings, environments)
            tasks = [asyncio.create_task(c.run(stop), name=f"consume:{c.queue}") for c in consumers]
            log.info(
                "genesis_started",
                concurrency=concurrency,
                sandbox="UNSAFE (no isolation)"
                if settings.genesis_unsafe_sandbox
                else "bubblewrap",
                workspaces=str(settings.genesis_dir / "workspaces"),
            )
            self.ready.set()
            await run_tasks(tasks, stop)
        log.info("genesis_stopped")

    async def _sandbox(self, settings: Settings, *, required: bool) -> Sandbox | None:
        """The sandbox, proven to work; None (logged) when it cannot be set up and Genesis
        is not required to run."""
        sandbox = Sandbox(unsafe=settings.genesis_unsafe_sandbox)
        try:
            await sandbox.check()  # fails closed: no sandbox, no code runs
        except SandboxUnavailable as exc:
            if required:
                raise SingularityError(f"Genesis cannot sandbox code: {exc}") from None
            log.error("genesis_disabled", reason=str(exc), consuming="nothing")
            return None
        return sandbox


def _consumers(
    bus: Bus,
    store: GenesisStore,
    sandbox: Sandbox,
    settings: Settings,
    environments: Environments | None,
) -> list[Consumer[Any]]:
    """The job and experiment consumers of one worker."""
    targets = ReplyTargets(bus.pool)
    # Workspace snapshots are read through the bus's pool, as the consumer's role.
    snapshots = Snapshots.from_settings(bus.pool, settings)
    jobs = JobHandler(
        sandbox,
        store,
        targets,
        DEFAULT_LIMITS,
        unsafe=settings.genesis_unsafe_sandbox,
        runs=settings.genesis_concurrency,
        snapshots=snapshots,
        environments=environments,
    )
    experiments = ExperimentHandler(sandbox, store, targets, settings, snapshots, environments)
    return [
        bus.consumer(
            "job_requests",
            JobRequest,
            jobs,
            options=consumer_options(
                settings,
                concurrency=jobs.deliveries,
                visibility_timeout_s=settings.genesis_visibility_timeout_s,
            ),
            on_invalid=jobs.on_invalid,
        ),
        bus.consumer(
            "experiment_requests",
            ExperimentRequest,
            experiments,
            options=consumer_options(settings, concurrency=_EXPERIMENT_CONCURRENCY, batch_size=1),
            on_invalid=experiments.on_invalid,
        ),
    ]
