"""The Singularity service: one instance's inbox, the tasks no live runner holds, backups."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg
import structlog

from singularity.errors import DatabaseUnavailable
from singularity.orchestrator.events_relay import relay_task_events
from singularity.orchestrator.knowledge import KnowledgeStore, embedder_from_settings
from singularity.orchestrator.platform import Connected, connect
from singularity.orchestrator.runner import TaskRunner
from singularity.postgres.connect import describe_error
from singularity.postgres.topology import Database
from singularity.service_context import ServiceContext, run_tasks

__all__ = ["Singularity", "knowledge_source"]

log = structlog.get_logger(__name__)


def knowledge_source(store: KnowledgeStore, settings: Any) -> Any:
    """The runner's view of knowledge search: hits as plain dicts."""
    embedder = embedder_from_settings(settings)

    async def search(query: str, limit: int) -> list[dict[str, Any]]:
        hits = await store.search(query, limit=limit, embedder=embedder)
        return [
            {
                "id": hit.id,
                "artifact_type": hit.artifact_type,
                "artifact_id": hit.artifact_id,
                "text": hit.content_raw[:2000],
            }
            for hit in hits
        ]

    return search


def task_runner(connected: Connected, settings: Any, **options: Any) -> TaskRunner:
    """A runner with knowledge search and usage counts wired in."""
    knowledge = KnowledgeStore(connected.store.pool)

    async def record_usage(ids: list[int], success: bool) -> None:
        await knowledge.record_usage(ids, success=success)

    return TaskRunner(
        connected.client,
        connected.store,
        settings,
        knowledge=knowledge_source(knowledge, settings),
        record_usage=record_usage,
        **options,
    )


class Singularity:
    """One Singularity instance; run it beside `singularity task` or on its own."""

    name = "singularity"

    def __init__(self, *, claim_every_s: float = 5.0, max_tasks: int | None = None) -> None:
        self.claim_every_s = claim_every_s
        self.max_tasks = max_tasks  # None: SINGULARITY_MAX_TASKS
        self.ready = asyncio.Event()

    async def run(self, context: ServiceContext, stop: asyncio.Event) -> None:
        settings, cluster = context.settings, context.cluster
        async with connect(cluster, settings, name="singularity") as connected:
            runner = task_runner(connected, settings)
            limit = self.max_tasks or settings.singularity_max_tasks
            resume = self._resume(runner, stop, limit)
            relay = relay_task_events(
                connected.store, connected.client.publisher, cluster.instance, stop
            )
            work = [
                asyncio.create_task(resume, name="tasks:resume"),
                asyncio.create_task(relay, name="tasks:events"),
            ]
            if settings.singularity_backups and cluster.instance == 1:
                from singularity.orchestrator.backup import run_backups

                work.append(
                    asyncio.create_task(run_backups(cluster, settings, stop), name="backups")
                )
            log.info(
                "singularity_started",
                instance=cluster.instance,
                database=cluster.database_name(Database.SINGULARITY),
                backups=settings.singularity_backups and cluster.instance == 1,
            )
            self.ready.set()
            await run_tasks(work, stop)
        log.info("singularity_stopped")

    async def _resume(self, runner: TaskRunner, stop: asyncio.Event, limit: int) -> None:
        """Take over tasks whose runner died (its lease ran out), `limit` at a time."""
        running: set[asyncio.Task[Any]] = set()
        try:
            while not stop.is_set():
                try:
                    await self._claim(runner, running, limit)
                except (psycopg.Error, DatabaseUnavailable) as exc:
                    log.warning("task_claim_failed", error=describe_error(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.claim_every_s)
        finally:
            for job in running:
                job.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _claim(self, runner: TaskRunner, running: set[asyncio.Task[Any]], limit: int) -> None:
        while len(running) < limit:
            task_id = await runner.store.claim_orphan(runner.runner)
            if task_id is None:
                return
            log.info("task_resumed", task_id=task_id, runner=runner.runner)
            job = asyncio.create_task(runner.run(task_id), name=f"task:{task_id}")
            running.add(job)
            job.add_done_callback(running.discard)
            job.add_done_callback(_log_crash)


def _log_crash(job: asyncio.Task[Any]) -> None:
    """A runner that stopped on an error (the database went away, say): its lease runs out
    and the task is taken over again; say why here, where no one awaits the runner."""
    if not job.cancelled() and job.exception() is not None:
        log.warning("task_runner_failed", task=job.get_name(), error=str(job.exception()))
