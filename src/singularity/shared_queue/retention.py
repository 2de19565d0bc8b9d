"""Retention: archive rows (and send-once keys) older than SHARED_QUEUE_RETENTION_DAYS are
deleted, in batches."""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
import structlog

from singularity.shared_queue.sql import QUERIES, archive_table

__all__ = ["prune_archives", "prune_sent_once"]

log = structlog.get_logger(__name__)


async def prune_archives(
    conn: psycopg.AsyncConnection, queues: Iterable[str], *, days: int, batch: int = 5000
) -> dict[str, int]:
    """Delete archived messages older than `days` from each queue's archive; counts by queue.

    Each batch is its own short transaction, so pruning never holds long locks.
    """
    pruned: dict[str, int] = {}
    for queue in queues:
        query = QUERIES.compose("prune_archive", archive=archive_table(queue))
        total = 0
        while True:
            cursor = await conn.execute(query, {"days": days, "batch": batch})
            total += cursor.rowcount
            if cursor.rowcount < batch:
                break
        pruned[queue] = total
        if total:
            log.info("archive_pruned", queue=queue, rows=total, older_than_days=days)
    return pruned


async def prune_sent_once(conn: psycopg.AsyncConnection, *, days: int, batch: int = 5000) -> int:
    """Delete send-once keys older than `days`; how many."""
    total = 0
    while True:
        cursor = await conn.execute(QUERIES["prune_sent_once"], {"days": days, "batch": batch})
        total += cursor.rowcount
        if cursor.rowcount < batch:
            break
    if total:
        log.info("sent_once_pruned", rows=total, older_than_days=days)
    return total
