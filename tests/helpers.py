"""Small helpers the tests share."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from psycopg_pool import AsyncConnectionPool

from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import async_connection
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import Consumer, JobRequest, ensure_queue
from singularity.shared_queue.install import grant_publish


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    """Wait until `await check()` is true; fail after `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Running:
    """A consumer running in the background for the length of an `async with` block."""

    def __init__(self, consumer: Consumer[Any]) -> None:
        self.consumer = consumer
        self.stop = asyncio.Event()

    async def __aenter__(self) -> Consumer[Any]:
        self.task = asyncio.create_task(self.consumer.run(self.stop))
        return self.consumer

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


async def count(pool: AsyncConnectionPool, table: str) -> int:
    """Rows of a pgmq table, e.g. `q_jobs` or `a_jobs`."""
    async with pool.connection() as conn:
        row = await (await conn.execute(f"SELECT count(*) FROM pgmq.{table}")).fetchone()
    assert row is not None
    return int(row[0])


async def bodies(pool: AsyncConnectionPool, table: str) -> list[dict[str, Any]]:
    """The messages of a pgmq table, oldest first."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(f"SELECT message FROM pgmq.{table} ORDER BY msg_id")
        ).fetchall()
    return [row[0] for row in rows]


def rows_are(pool: AsyncConnectionPool, table: str, expected: int) -> Callable[[], Awaitable[bool]]:
    """A check for `eventually`: the table holds `expected` rows."""

    async def check() -> bool:
        return await count(pool, table) == expected

    return check


def holds(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """A check for `eventually` from a plain condition."""

    async def check() -> bool:
        return condition()

    return check


def job(i: int = 0, **extra: Any) -> JobRequest:
    return JobRequest(
        id=f"job-{i}-{uuid.uuid4().hex[:6]}", code="print(1)", language="python", **extra
    )


def singularity(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `singularity` command as a user would, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "singularity", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


@contextlib.asynccontextmanager
async def answer_queue(cluster: Cluster, role: Role, prefix: str) -> AsyncIterator[str]:
    """A fresh queue that `role` may answer on (as a Singularity instance's reply queue is)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        await ensure_queue(conn, name)
        await grant_publish(conn, cluster.role_name(role), name)
    try:
        yield name
    finally:
        async with async_connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
            await conn.execute("SELECT pgmq.drop_queue(%s)", (name,))
