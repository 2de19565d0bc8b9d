"""Queue metrics as PostgreSQL sees them: depth, age, totals, archive and dead letters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg

from singularity.shared_queue.sql import QUERIES, archive_table, queue_table

__all__ = ["QueueDepth", "QueueMetrics", "list_queues", "peek", "queue_depths", "queue_metrics"]


@dataclass(frozen=True)
class QueueMetrics:
    queue: str
    length: int
    visible: int
    oldest_age_s: int | None
    newest_age_s: int | None
    total_sent: int
    archived: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    length: int
    oldest_age_s: int | None


async def queue_depths(conn: psycopg.AsyncConnection) -> list[QueueDepth]:
    """Depth and oldest age of every queue; any service role may ask (counts only)."""
    rows = await (await conn.execute(QUERIES["queue_depths"])).fetchall()
    return [QueueDepth(row[0], int(row[1]), row[2]) for row in rows]


async def list_queues(conn: psycopg.AsyncConnection) -> list[str]:
    rows = await (await conn.execute(QUERIES["list_queues"])).fetchall()
    return [row[0] for row in rows]


async def peek(
    conn: psycopg.AsyncConnection, queue: str, limit: int
) -> list[tuple[int, int, datetime, datetime, str]]:
    """The oldest messages of a queue, without taking them: (msg_id, read_ct, enqueued_at,
    vt, body)."""
    query = QUERIES.compose("peek", queue_table=queue_table(queue))
    return list(await (await conn.execute(query, {"n": limit})).fetchall())


async def queue_metrics(conn: psycopg.AsyncConnection) -> list[QueueMetrics]:
    """Metrics of every queue, in name order."""
    metrics = []
    for queue in await list_queues(conn):
        query = QUERIES.compose("metrics", archive=archive_table(queue))
        row = await (await conn.execute(query, {"queue": queue})).fetchone()
        assert row is not None
        metrics.append(QueueMetrics(row[0], row[1], row[2], row[3], row[4], row[5], row[6]))
    return metrics
