"""Group commit: handled messages are archived in batches, each with its replies in the same
transaction, so a result is published exactly when its request is archived."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from singularity.postgres.connect import describe_error
from singularity.shared_queue.delivery import Done
from singularity.shared_queue.publisher import encode, encode_batch
from singularity.shared_queue.sql import QUERIES, archive_table
from singularity.shared_queue.stats import ConsumerStats

__all__ = ["Committer"]

log = structlog.get_logger(__name__)

_ATTEMPTS = 5


class Committer:
    """Archives what a consumer handled; while a commit runs, the next batch gathers."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        queue: str,
        stats: ConsumerStats,
        on_settled: Callable[[], None],
    ) -> None:
        self.queue = queue
        self.pending: set[int] = set()  # handled, not yet archived: the heartbeat covers them
        self._pool = pool
        self._stats = stats
        self._on_settled = on_settled
        self._done: list[Done] = []
        self._needed = asyncio.Event()
        self._closing = False
        self._keys_query = QUERIES.compose("archived_keys", archive=archive_table(queue))

    def add(self, done: Done) -> None:
        self.pending.add(done.delivery.msg_id)
        self._done.append(done)
        self._needed.set()

    async def run(self) -> None:
        """Commit batches as they gather, until `close()`; then commit what is left."""
        while True:
            await self._needed.wait()
            self._needed.clear()
            await self.flush()
            if self._closing and not self._done:
                return

    def close(self) -> None:
        """Ask `run()` to finish: a commit under way is completed, never cut off."""
        self._closing = True
        self._needed.set()

    async def flush(self) -> None:
        """Commit everything gathered so far."""
        batch, self._done = self._done, []
        if batch:
            await self._commit_with_retry(batch)

    async def _commit_with_retry(self, batch: list[Done]) -> None:
        for attempt in range(_ATTEMPTS):
            try:
                await self._commit(batch)
                break
            except psycopg.Error as exc:
                log.warning(
                    "commit_failed",
                    queue=self.queue,
                    attempt=attempt + 1,
                    error=describe_error(exc),
                )
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        else:
            # Nothing was archived: the messages return after their visibility timeout.
            log.error("commit_abandoned", queue=self.queue, messages=len(batch))
        self.pending.difference_update(d.delivery.msg_id for d in batch)
        self._on_settled()

    async def _commit(self, batch: list[Done]) -> None:
        ids = [d.delivery.msg_id for d in batch]
        with_replies = [d for d in batch if d.replies]
        async with self._pool.connection() as conn:
            if not with_replies:
                cursor = await conn.execute(QUERIES["archive"], {"queue": self.queue, "ids": ids})
                archived = len(await cursor.fetchall())
                self._stats.handled += archived
                # The rest ran out of visibility and another consumer archived them first.
                self._stats.duplicates += len(batch) - archived
                return
            async with conn.transaction():
                handled_elsewhere = await self._lock_keys(conn, with_replies, ids)
                cursor = await conn.execute(QUERIES["archive"], {"queue": self.queue, "ids": ids})
                archived = {row[0] for row in await cursor.fetchall()}
                outgoing = self._outgoing(with_replies, archived, handled_elsewhere)
                for queue, bodies in outgoing.items():
                    await conn.execute(
                        QUERIES["send_batch"],
                        {"queue": queue, "messages": encode_batch(bodies), "delay": 0},
                    )
        self._stats.handled += len(archived)
        lost = [d for d in batch if not d.replies and d.delivery.msg_id not in archived]
        self._stats.duplicates += len(lost)  # (those with replies are counted in _outgoing)

    async def _lock_keys(
        self, conn: psycopg.AsyncConnection, done: list[Done], ids: list[int]
    ) -> set[str]:
        """Lock the request keys of these messages; return those another message handled."""
        keys = sorted({d.delivery.key for d in done if d.delivery.key})
        if not keys:
            return set()
        await conn.execute(QUERIES["lock_keys"], {"queue": self.queue, "keys": keys})
        cursor = await conn.execute(self._keys_query, {"keys": keys, "ids": ids})
        return {row[0] for row in await cursor.fetchall()}

    def _outgoing(
        self, done: list[Done], archived: set[int], handled_elsewhere: set[str]
    ) -> dict[str, list[str]]:
        """The replies to send, by queue: one set per request key, none for a lost message."""
        outgoing: dict[str, list[str]] = {}
        sent_keys: set[str] = set(handled_elsewhere)
        for item in done:
            delivery = item.delivery
            if delivery.msg_id not in archived:
                # Its visibility ran out and another consumer archived it first: no effect here.
                self._stats.duplicates += 1
                continue
            if delivery.key is not None:
                if delivery.key in sent_keys:
                    self._stats.duplicates += 1
                    continue
                sent_keys.add(delivery.key)
            for reply in item.replies:
                outgoing.setdefault(reply.queue, []).append(encode(reply.message))
        return outgoing
