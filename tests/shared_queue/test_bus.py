"""A whole flow on the real roles: each service publishes and consumes only through its grants."""

from __future__ import annotations

import asyncio
import uuid

from psycopg_pool import AsyncConnectionPool

from helpers import Running, eventually, holds
from singularity.config import Settings
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import connection
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import (
    Delivery,
    JobRequest,
    JobResult,
    Reply,
    consumer_options,
    open_bus,
)


async def test_a_job_travels_from_singularity_to_genesis_and_back(
    cluster: Cluster, settings: Settings, bus_pool: AsyncConnectionPool
) -> None:
    results: list[JobResult] = []
    job_id = f"flow-{uuid.uuid4().hex[:8]}"

    async def run_job(delivery: Delivery[JobRequest]) -> Reply:
        output = f"ran {delivery.message.language}"
        return Reply("job_results", JobResult(request_id=delivery.request_id, output=output))

    async def collect(delivery: Delivery[JobResult]) -> None:
        results.append(delivery.message)

    singularity = cluster.service(Role.SINGULARITY, Database.SHARED_QUEUE)
    genesis = cluster.service(Role.GENESIS, Database.SHARED_QUEUE)
    options = consumer_options(settings, poll_interval_s=0.05, max_deliveries=1)
    async with (
        open_bus(singularity, settings, name="singularity") as agents,
        open_bus(genesis, settings, name="genesis") as worker,
    ):
        await agents.publisher.send(
            "job_requests", JobRequest(id=job_id, code="print(1)", language="python")
        )
        await agents.publisher.send("job_requests", {"id": "broken", "language": "python"})
        async with (
            Running(worker.consumer("job_requests", JobRequest, run_job, options=options)),
            Running(agents.consumer("job_results", JobResult, collect, options=options)),
        ):
            await eventually(holds(lambda: any(r.request_id == job_id for r in results)))
            await asyncio.sleep(0.2)
    assert [r.output for r in results if r.request_id == job_id] == ["ran python"]
    with connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        letters = conn.execute(
            "SELECT message FROM pgmq.q_job_requests_dlq "
            "WHERE message->'original'->>'id' = 'broken'"
        ).fetchall()
        conn.execute("SELECT pgmq.purge_queue('job_requests_dlq')")
    assert letters[0]["message"]["reason"] == (
        "invalid message: a job of code names both `code` and `language`"
    )
