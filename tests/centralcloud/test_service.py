"""CentralCloud prunes the archives as the centralcloud role, and learns, on its own schedule."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg.sql

from centralcloud.support import Archives
from singularity.centralcloud.service import CentralCloud
from singularity.config import Settings
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection
from singularity.postgres.topology import Database, Role
from singularity.service_context import ServiceContext


async def test_the_service_prunes_expired_archives_and_keeps_running(
    cluster: Cluster, settings: Settings
) -> None:
    async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        await conn.execute(
            "INSERT INTO pgmq.a_llm_results (msg_id, vt, message, archived_at) VALUES "
            "(-1, now(), '{\"request_id\": \"old\"}', now() - interval '91 days'), "
            "(-2, now(), '{\"request_id\": \"new\"}', now() - interval '1 day')"
        )
    service = CentralCloud(retention_every_s=0.1, report_every_s=0.1)
    stop = asyncio.Event()
    running = asyncio.create_task(service.run(ServiceContext(settings, cluster), stop))
    try:
        async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
            for _ in range(100):
                rows = await (
                    await conn.execute("SELECT msg_id FROM pgmq.a_llm_results WHERE msg_id < 0")
                ).fetchall()
                if rows == [(-2,)]:
                    break
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
        async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
            await conn.execute("DELETE FROM pgmq.a_llm_results WHERE msg_id < 0")
    assert rows == [(-2,)]


async def test_the_service_learns_from_the_archives_on_schedule(
    cluster: Cluster, settings: Settings, archives: Archives, tag: str
) -> None:
    code = f"import lib{tag}\n"
    await archives.add(
        "job_requests", {"id": f"j{tag}", "code": code, "language": "python"}, datetime.now(UTC)
    )
    service = CentralCloud(report_every_s=0.05, learn_every_s=0.05, learn_settle_s=0)
    stop = asyncio.Event()
    running = asyncio.create_task(service.run(ServiceContext(settings, cluster), stop))
    query = "SELECT jobs FROM library_usage WHERE language = 'python' AND library = %s"
    try:
        async with async_connection(cluster.admin(Database.CENTRALCLOUD)) as conn:
            for _ in range(100):
                row = await (await conn.execute(query, (f"lib{tag}",))).fetchone()
                if row is not None:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # several more runs: still counted once
            again = await (await conn.execute(query, (f"lib{tag}",))).fetchone()
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
    assert row == (1,) and again == (1,)


async def test_the_service_repairs_a_lost_grant_and_a_dropped_queue(
    cluster: Cluster, settings: Settings
) -> None:
    nexus = cluster.role_name(Role.NEXUS)
    check = "SELECT has_table_privilege(%s, 'pgmq.q_llm_results', 'INSERT')"
    exists = "SELECT count(*) FROM pgmq.meta WHERE queue_name = 'question_requests_dlq'"
    async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        await conn.execute(
            psycopg.sql.SQL("REVOKE INSERT ON pgmq.q_llm_results FROM {}").format(
                psycopg.sql.Identifier(nexus)
            )
        )
        await conn.execute("SELECT pgmq.drop_queue('question_requests_dlq')")
        assert await (await conn.execute(check, (nexus,))).fetchone() == (False,)
    service = CentralCloud(report_every_s=0.05, repair_every_s=0.05, learn_every_s=3600)
    stop = asyncio.Event()
    running = asyncio.create_task(service.run(ServiceContext(settings, cluster), stop))
    try:
        async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
            for _ in range(200):
                granted = await (await conn.execute(check, (nexus,))).fetchone()
                queues = await (await conn.execute(exists)).fetchone()
                if granted == (True,) and queues == (1,):
                    break
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
    assert (granted, queues) == ((True,), (1,))
