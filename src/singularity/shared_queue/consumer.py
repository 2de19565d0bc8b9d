"""The consumer runtime every service uses to handle a queue.

Delivery rules:
- messages are read in batches with a visibility timeout, and handled concurrently up to a
  bound; a heartbeat keeps extending the timeout of messages still being worked on;
- a handler's replies are sent in the same transaction that archives its message, so a
  result is published exactly when its request is archived; a request key already handled
  (same request_id, another message) is archived without a second effect;
- a failing handler is retried with exponential backoff; a message that fails
  `max_deliveries` times, or cannot be parsed, goes to the dead-letter queue with the reason;
- on shutdown, handlers get a grace period, then their messages are released at once.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ValidationError

from singularity.postgres.connect import describe_error
from singularity.shared_queue.deadletter import dead_letter
from singularity.shared_queue.listener import Listener
from singularity.shared_queue.messages import BusMessage, validate_queue_name
from singularity.shared_queue.publisher import encode, encode_batch
from singularity.shared_queue.sql import QUERIES, archive_table
from singularity.shared_queue.stats import ConsumerStats
from singularity.shared_queue.waiting import race

__all__ = [
    "Consumer",
    "ConsumerOptions",
    "Delivery",
    "Handler",
    "PermanentFailure",
    "Reply",
]

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)


class PermanentFailure(Exception):
    """Raised by a handler for a message that can never succeed: dead-lettered at once."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A message to send when (and only when) the message being handled is archived."""

    queue: str
    message: BusMessage | dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delivery(Generic[M]):
    """One delivery of one message to a handler."""

    queue: str
    msg_id: int
    read_ct: int
    enqueued_at: datetime
    message: M
    key: str | None

    @property
    def request_id(self) -> str:
        """The request this message belongs to; pgmq's msg_id stands in when it has none."""
        return self.key or str(self.msg_id)


Handler = Callable[[Delivery[M]], Awaitable[Sequence[Reply] | Reply | None]]


@dataclass(frozen=True)
class ConsumerOptions:
    """How a consumer reads; the defaults suit a request/response queue."""

    batch_size: int = 100
    visibility_timeout_s: int = 30
    max_deliveries: int = 5
    concurrency: int = 64
    poll_interval_s: float = 0.25
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    shutdown_grace_s: float = 10.0


@dataclass(slots=True)
class _Row:
    msg_id: int
    read_ct: int
    enqueued_at: datetime
    body: str
    key: str | None
    seen: bool


@dataclass(slots=True)
class _Done:
    delivery: Delivery[Any]
    replies: list[Reply] = field(default_factory=list)


class Consumer(Generic[M]):
    """Handles one queue with one handler until stopped."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        queue: str,
        model: type[M],
        handler: Handler[M],
        *,
        options: ConsumerOptions | None = None,
        listener: Listener | None = None,
        dead_letter_queue: str | None = None,
    ) -> None:
        self.queue = validate_queue_name(queue)
        self.dead_letter_queue = dead_letter_queue or f"{queue}_dlq"
        self.options = options or ConsumerOptions()
        self.stats = ConsumerStats(queue)
        self._pool = pool
        self._model = model
        self._handler = handler
        self._wake = listener.subscribe(queue) if listener else asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._done: list[_Done] = []
        self._committing: set[int] = set()
        self._slot_freed = asyncio.Event()
        self._commit_needed = asyncio.Event()
        self._read_query = QUERIES.compose("read", archive=archive_table(queue))
        self._keys_query = QUERIES.compose("archived_keys", archive=archive_table(queue))

    # -- the loops -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; then finish or release what is in flight."""
        log.info("consumer_started", queue=self.queue, **_options_log(self.options))
        committer = asyncio.create_task(self._commit_loop(), name=f"commit:{self.queue}")
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name=f"heartbeat:{self.queue}")
        try:
            await self._read_loop(stop)
        finally:
            await self._shutdown(committer, heartbeat)
            log.info("consumer_stopped", queue=self.queue, **self.stats.snapshot())

    async def _read_loop(self, stop: asyncio.Event) -> None:
        opts = self.options
        while not stop.is_set():
            free = opts.concurrency - len(self._inflight)
            if free <= 0:
                self._slot_freed.clear()
                await race(self._slot_freed.wait(), stop.wait(), seconds=opts.poll_interval_s)
                continue
            self._wake.clear()
            try:
                rows = await self._read(min(opts.batch_size, free))
            except psycopg.Error as exc:
                log.warning("read_failed", queue=self.queue, error=describe_error(exc))
                await race(stop.wait(), seconds=min(5.0, opts.poll_interval_s * 8))
                continue
            if not rows:
                await race(self._wake.wait(), stop.wait(), seconds=opts.poll_interval_s)
                continue
            for row in rows:
                rejected = self._dispatch(row)
                if rejected is not None:
                    await self._dead_letter(row, rejected)

    async def _read(self, qty: int) -> list[_Row]:
        params = {"queue": self.queue, "vt": self.options.visibility_timeout_s, "qty": qty}
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._read_query, params)
            rows = await cursor.fetchall()
        return [_Row(r[0], r[1], r[2], r[3], r[5], r[6]) for r in rows]

    def _dispatch(self, row: _Row) -> str | None:
        """Start handling one message; returns why it must be dead-lettered instead, if so."""
        try:
            message = self._model.model_validate_json(row.body)
        except ValidationError as exc:
            return f"invalid message: {_validation_summary(exc)}"
        if row.read_ct > self.options.max_deliveries:
            return f"delivered {row.read_ct - 1} times without being handled"
        delivery = Delivery(self.queue, row.msg_id, row.read_ct, row.enqueued_at, message, row.key)
        if row.seen:
            self.stats.duplicates += 1
            log.info("duplicate_skipped", queue=self.queue, msg_id=row.msg_id, key=row.key)
            self._finish(_Done(delivery))
        else:
            task = _start(self._handle(delivery, row))
            if not task.done():
                self._inflight[row.msg_id] = task
        return None

    async def _handle(self, delivery: Delivery[M], row: _Row) -> None:
        started = time.monotonic()
        try:
            outcome = await self._handler(delivery)
        except asyncio.CancelledError:
            raise
        except PermanentFailure as exc:
            await self._dead_letter(row, f"handler refused it: {exc}")
        except Exception as exc:
            await self._failed(row, exc)
        else:
            self.stats.observe(delivery.enqueued_at, time.monotonic() - started)
            self._finish(_Done(delivery, _as_replies(outcome)))
        finally:
            self._inflight.pop(row.msg_id, None)
            self._slot_freed.set()

    def _finish(self, done: _Done) -> None:
        self._committing.add(done.delivery.msg_id)
        self._done.append(done)
        self._commit_needed.set()

    async def _failed(self, row: _Row, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if row.read_ct >= self.options.max_deliveries:
            await self._dead_letter(row, f"failed {row.read_ct} times; last error: {error}")
            return
        delay = min(self.options.retry_max_s, self.options.retry_base_s * 2 ** (row.read_ct - 1))
        delay = round(delay * random.uniform(0.8, 1.2), 3)
        self.stats.retried += 1
        log.warning(
            "handler_failed",
            queue=self.queue,
            msg_id=row.msg_id,
            delivery=row.read_ct,
            retry_in_s=delay,
            error=error,
        )
        await self._set_vt([row.msg_id], delay)

    async def _dead_letter(self, row: _Row, reason: str) -> None:
        self.stats.dead_lettered += 1
        log.warning(
            "dead_lettered",
            queue=self.queue,
            msg_id=row.msg_id,
            dead_letter_queue=self.dead_letter_queue,
            reason=reason,
        )
        try:
            async with self._pool.connection() as conn:
                await dead_letter(
                    conn,
                    queue=self.queue,
                    dead_letter_queue=self.dead_letter_queue,
                    msg_id=row.msg_id,
                    read_ct=row.read_ct,
                    enqueued_at=row.enqueued_at,
                    body=row.body,
                    reason=reason,
                )
        except psycopg.Error as exc:
            # The message stays in its queue and comes back after its visibility timeout.
            log.error("dead_letter_failed", queue=self.queue, error=describe_error(exc))

    # -- committing ----------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await self._commit_needed.wait()
            self._commit_needed.clear()
            batch, self._done = self._done, []
            if batch:
                await self._commit_with_retry(batch)

    async def _commit_with_retry(self, batch: list[_Done]) -> None:
        for attempt in range(5):
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
        self._committing.difference_update(d.delivery.msg_id for d in batch)
        self._slot_freed.set()

    async def _commit(self, batch: list[_Done]) -> None:
        ids = [d.delivery.msg_id for d in batch]
        with_replies = [d for d in batch if d.replies]
        async with self._pool.connection() as conn:
            if not with_replies:
                await conn.execute(QUERIES["archive"], {"queue": self.queue, "ids": ids})
                self.stats.handled += len(batch)
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
        self.stats.handled += len(batch)

    async def _lock_keys(
        self, conn: psycopg.AsyncConnection, done: list[_Done], ids: list[int]
    ) -> set[str]:
        """Lock the request keys of these messages; return those another message handled."""
        keys = sorted({d.delivery.key for d in done if d.delivery.key})
        if not keys:
            return set()
        await conn.execute(QUERIES["lock_keys"], {"queue": self.queue, "keys": keys})
        cursor = await conn.execute(self._keys_query, {"keys": keys, "ids": ids})
        return {row[0] for row in await cursor.fetchall()}

    def _outgoing(
        self, done: list[_Done], archived: set[int], handled_elsewhere: set[str]
    ) -> dict[str, list[str]]:
        outgoing: dict[str, list[str]] = {}
        sent_keys: set[str] = set(handled_elsewhere)
        for item in done:
            delivery = item.delivery
            if delivery.msg_id not in archived:
                # Its visibility ran out and another consumer archived it first: no effect here.
                self.stats.duplicates += 1
                continue
            if delivery.key is not None:
                if delivery.key in sent_keys:
                    self.stats.duplicates += 1
                    continue
                sent_keys.add(delivery.key)
            for reply in item.replies:
                outgoing.setdefault(reply.queue, []).append(encode(reply.message))
        return outgoing

    # -- visibility ----------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        period = max(1.0, self.options.visibility_timeout_s / 3)
        while True:
            await asyncio.sleep(period)
            held = list(self._inflight) + list(self._committing)
            if held:
                await self._set_vt(held, self.options.visibility_timeout_s)

    async def _set_vt(self, ids: list[int], seconds: float) -> None:
        try:
            async with self._pool.connection() as conn:
                await conn.execute(
                    QUERIES["set_vt"], {"queue": self.queue, "ids": ids, "vt": seconds}
                )
        except psycopg.Error as exc:
            log.warning("set_vt_failed", queue=self.queue, error=describe_error(exc))

    # -- shutdown ------------------------------------------------------------------------

    async def _shutdown(self, committer: asyncio.Task[None], heartbeat: asyncio.Task[None]) -> None:
        tasks = list(self._inflight.values())
        if tasks:
            log.info("consumer_draining", queue=self.queue, in_flight=len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=self.options.shutdown_grace_s)
            unfinished = [msg_id for msg_id, task in self._inflight.items() if task in pending]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if unfinished:
                await self._set_vt(unfinished, 0)
                log.info("released", queue=self.queue, messages=len(unfinished))
        heartbeat.cancel()
        committer.cancel()
        await asyncio.gather(heartbeat, committer, return_exceptions=True)
        if self._done:
            batch, self._done = self._done, []
            await self._commit_with_retry(batch)


def _start(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A task for a handler; on Python 3.12+ it starts eagerly, so a handler that never
    blocks finishes without a trip through the event loop's queue."""
    if _EAGER:
        return asyncio.Task(coroutine, loop=asyncio.get_running_loop(), eager_start=True)  # type: ignore[call-arg]
    return asyncio.create_task(coroutine)


_EAGER = sys.version_info >= (3, 12)


def _as_replies(outcome: Sequence[Reply] | Reply | None) -> list[Reply]:
    if outcome is None:
        return []
    if isinstance(outcome, Reply):
        return [outcome]
    return list(outcome)


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _options_log(options: ConsumerOptions) -> dict[str, Any]:
    return {
        "batch_size": options.batch_size,
        "concurrency": options.concurrency,
        "visibility_timeout_s": options.visibility_timeout_s,
        "max_deliveries": options.max_deliveries,
    }
