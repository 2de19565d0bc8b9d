"""Archived messages put on the shared bus for a test, as their consumers would archive them."""

from __future__ import annotations

import json
import random
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from singularity.postgres.cluster import Cluster
from singularity.postgres.topology import Role
from singularity.shared_queue import ensure_queue
from singularity.shared_queue.sql import QUERIES as BUS_QUERIES


class Archives:
    """Puts messages into the bus's archives as their consumers would (send, then archive),
    with the enqueueing time each test needs; removes them afterwards."""

    def __init__(self, conn: psycopg.AsyncConnection, cluster: Cluster) -> None:
        self.conn = conn
        self.cluster = cluster
        self.sent: list[tuple[str, int]] = []
        self.queues: list[str] = []

    async def add(self, queue: str, message: dict[str, Any], enqueued_at: datetime) -> int:
        """Archive one message of `queue`, enqueued at `enqueued_at`; returns its msg_id."""
        archive = sql.Identifier(f"a_{queue}")
        async with self.conn.transaction():  # no consumer can take it in between
            cursor = await self.conn.execute(
                "SELECT pgmq.send(%s, %s::jsonb)", (queue, json.dumps(message))
            )
            row = await cursor.fetchone()
            assert row is not None
            msg_id = int(row[0])
            await self.conn.execute("SELECT pgmq.archive(%s, %s::bigint)", (queue, msg_id))
            await self.conn.execute(
                sql.SQL("UPDATE pgmq.{} SET enqueued_at = %s WHERE msg_id = %s").format(archive),
                (enqueued_at, msg_id),
            )
        self.sent.append((queue, msg_id))
        return msg_id

    async def instance_queue(self, base: str) -> str:
        """A results queue of another Singularity instance (`<base>_<n>`), readable by the
        analytics role as `db init` grants it."""
        name = f"{base}_9{random.randrange(10**6):06d}"
        await ensure_queue(self.conn, name)
        role = self.cluster.role_name(Role.CENTRALCLOUD_ANALYTICS)
        await self.conn.execute(
            BUS_QUERIES.compose("grant_read_archive", role=role, archive=f"a_{name}")
        )
        self.queues.append(name)
        return name

    async def clean(self) -> None:
        for queue, msg_id in self.sent:
            if queue not in self.queues:
                archive = sql.Identifier(f"a_{queue}")
                await self.conn.execute(
                    sql.SQL("DELETE FROM pgmq.{} WHERE msg_id = %s").format(archive), (msg_id,)
                )
        for queue in self.queues:
            await self.conn.execute("SELECT pgmq.drop_queue(%s)", (queue,))
