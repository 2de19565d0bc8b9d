"""The consumer runtime every service uses to handle a queue.

Delivery rules:
- messages are read in batches with a visibility timeout, and handled concurrently up to a
  bound; a heartbeat keeps extending the timeout of messages still being worked on;
- a handler's replies are sent in the same transaction that archives its message, so a
  result is published exactly when its request is archived; a request key already handled
  (same request_id, another message) is archived without a second effect;
- a failing handler is retried with exponential backoff; a message that fails
  `max_deliveries` times, or cannot be parsed, goes to the dead-letter queue with the reason;
- nothing in one message stops the loop: a body longer than `max_message_bytes` is never
  sent to the consumer, parsing is bounded in depth, and a message the server cannot even
  turn into text is dead-lettered by its id (the original moves inside the server);
- on shutdown, handlers get a grace period, then their messages are released at once.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Coroutine, Sequence
from typing import Any, Generic, TypeVar

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from singularity.observability.metrics import DEAD_LETTERED, FAILED
from singularity.postgres.connect import describe_error
from singularity.shared_queue.committer import Committer
from singularity.shared_queue.deadletter import bounded, dead_letter
from singularity.shared_queue.delivery import (
    ConsumerOptions,
    Delivery,
    Done,
    Handler,
    InvalidHandler,
    PermanentFailure,
    Reply,
    as_replies,
)
from singularity.shared_queue.intake import (
    INVALID,
    Row,
    about_a_message,
    body_for_reply,
    describe,
    parse,
)
from singularity.shared_queue.listener import Listener
from singularity.shared_queue.messages import MAX_KEY_LENGTH, validate_queue_name
from singularity.shared_queue.sql import QUERIES, archive_table, queue_table
from singularity.shared_queue.stats import ConsumerStats
from singularity.shared_queue.waiting import race

__all__ = ["Consumer"]

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)


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
        on_invalid: InvalidHandler | None = None,
    ) -> None:
        self.queue = validate_queue_name(queue)
        self.dead_letter_queue = dead_letter_queue or f"{queue}_dlq"
        self.options = options or ConsumerOptions()
        self.stats = ConsumerStats(queue)
        self._pool = pool
        self._model = model
        self._handler = handler
        self._on_invalid = on_invalid
        self._listener = listener
        self._wake = listener.subscribe(queue) if listener else asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._slot_freed = asyncio.Event()
        self._committer = Committer(pool, self.queue, self.stats, self._slot_freed.set)
        self._read_query = QUERIES.compose("read", archive=archive_table(queue))
        self._table = queue_table(queue)

    # -- the loops -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; then finish or release what is in flight."""
        log.info("consumer_started", queue=self.queue, **_options_log(self.options))
        committer = asyncio.create_task(self._committer.run(), name=f"commit:{self.queue}")
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name=f"heartbeat:{self.queue}")
        try:
            await self._read_loop(stop)
        finally:
            await self._shutdown(committer, heartbeat)
            if self._listener is not None:
                self._listener.unsubscribe(self.queue, self._wake)
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
                rows = await self._read_batch(min(opts.batch_size, free))
            except psycopg.Error as exc:
                log.warning("read_failed", queue=self.queue, error=describe_error(exc))
                await race(stop.wait(), seconds=min(5.0, opts.poll_interval_s * 8))
                continue
            if not rows:
                await race(self._wake.wait(), stop.wait(), seconds=opts.poll_interval_s)
                continue
            # Valid messages start first; a flood of bad ones in the batch does not hold them.
            rejected = [(row, why) for row in rows if (why := self._dispatch(row)) is not None]
            for row, why in rejected:
                replies = await self._invalid_replies(row, why)
                await self._dead_letter(row, why, replies)

    async def _read_batch(self, qty: int) -> list[Row]:
        """The next batch. When one message makes the server fail the batch (its text would
        pass PostgreSQL's 1 GB limit), the next message alone; when that is the one, it is
        dead-lettered unread, so that it cannot block the queue."""
        try:
            return await self._read(qty)
        except psycopg.Error as exc:
            if not about_a_message(exc):
                raise
            problem = exc
        if qty > 1:
            log.warning("read_narrowed", queue=self.queue, error=describe_error(problem))
            try:
                return await self._read(1)
            except psycopg.Error as exc:
                if not about_a_message(exc):
                    raise
                problem = exc
        await self._remove_unreadable(problem)
        return []

    async def _read(self, qty: int) -> list[Row]:
        params = {
            "queue": self.queue,
            "vt": self.options.visibility_timeout_s,
            "qty": qty,
            "max_bytes": self.options.max_message_bytes,
        }
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._read_query, params)
            rows = await cursor.fetchall()
        return [Row(*row) for row in rows]

    async def _remove_unreadable(self, problem: psycopg.Error) -> None:
        """Take the next message without its body; dead-letter it if the server cannot turn
        it into text (another consumer may have taken the culprit: then release this one)."""
        params = {"queue": self.queue, "vt": self.options.visibility_timeout_s}
        probe = QUERIES.compose("message_bytes", queue_table=self._table)
        async with self._pool.connection() as conn:
            taken = await (await conn.execute(QUERIES["read_bare"], params)).fetchall()
        for msg_id, read_ct, enqueued_at in taken:
            row = Row(msg_id, read_ct, enqueued_at, None, None)
            try:
                async with self._pool.connection() as conn:
                    await conn.execute(probe, {"msg_id": msg_id})
            except psycopg.Error as exc:
                if not about_a_message(exc):
                    raise
                reason = (
                    f"{INVALID}the server cannot read it: {exc.diag.message_primary or problem}"
                )
                await self._dead_letter(row, reason, await self._invalid_replies(row, reason))
            else:
                await self._set_vt([msg_id], 0)

    def _dispatch(self, row: Row) -> str | None:
        """Start handling one message; returns why it must be dead-lettered instead, if so."""
        message = parse(self._model, row, self.options.max_message_bytes)
        if isinstance(message, str):
            return message
        if row.key is not None and len(row.key) > MAX_KEY_LENGTH:
            # A key from a field the model does not check (an `id` it keeps as extra): the
            # archive could not index it, and the batch it is committed with would fail.
            return f"its request key is {len(row.key)} characters long; at most {MAX_KEY_LENGTH}"
        if row.read_ct > self.options.max_deliveries:
            return f"delivered {row.read_ct - 1} times without being handled"
        delivery = Delivery(self.queue, row.msg_id, row.read_ct, row.enqueued_at, message, row.key)
        if row.seen:
            self.stats.duplicates += 1
            log.info("duplicate_skipped", queue=self.queue, msg_id=row.msg_id, key=row.key)
            self._committer.add(Done(delivery))
        else:
            task = _start(self._handle(delivery, row))
            if not task.done():
                self._inflight[row.msg_id] = task
        return None

    async def _handle(self, delivery: Delivery[M], row: Row) -> None:
        started = time.monotonic()
        try:
            outcome = await self._handler(delivery)
        except asyncio.CancelledError:
            raise
        except PermanentFailure as exc:
            await self._dead_letter(
                row,
                f"handler refused it: {exc}",
                exc.replies,
                handler_s=time.monotonic() - started,
            )
        except Exception as exc:
            await self._failed(row, exc, time.monotonic() - started)
        else:
            self.stats.observe(delivery.enqueued_at, time.monotonic() - started)
            self._committer.add(Done(delivery, as_replies(outcome)))
        finally:
            self._inflight.pop(row.msg_id, None)
            self._slot_freed.set()

    async def _failed(self, row: Row, exc: Exception, handler_s: float) -> None:
        error = f"{type(exc).__name__}: {describe(exc)}"
        if row.read_ct >= self.options.max_deliveries:
            reason = f"failed {row.read_ct} times; last error: {error}"
            await self._dead_letter(row, reason, outcome=FAILED, handler_s=handler_s)
            return
        delay = min(self.options.retry_max_s, self.options.retry_base_s * 2 ** (row.read_ct - 1))
        delay = round(delay * random.uniform(0.8, 1.2), 3)
        self.stats.retry(handler_s)
        log.warning(
            "handler_failed",
            queue=self.queue,
            msg_id=row.msg_id,
            delivery=row.read_ct,
            retry_in_s=delay,
            error=error,
        )
        await self._set_vt([row.msg_id], delay)

    async def _invalid_replies(self, row: Row, reason: str) -> Sequence[Reply]:
        """What the service wants to answer to a message it cannot read (its asker waits)."""
        if self._on_invalid is None or not reason.startswith(INVALID):
            return ()
        try:
            body = await body_for_reply(self._pool, self._table, row)
            return await self._on_invalid(body, reason)
        except Exception as exc:  # the dead letter matters more than the courtesy reply
            log.warning("invalid_reply_failed", queue=self.queue, error=describe(exc))
            return ()

    async def _dead_letter(
        self,
        row: Row,
        reason: str,
        replies: Sequence[Reply] = (),
        *,
        outcome: str = DEAD_LETTERED,
        handler_s: float | None = None,
    ) -> None:
        reason = bounded(reason)
        self.stats.dead_letter(outcome, handler_s)
        log.warning(
            "dead_lettered",
            queue=self.queue,
            msg_id=row.msg_id,
            dead_letter_queue=self.dead_letter_queue,
            reason=reason,
        )
        try:
            await self._move_to_dead_letters(row, reason, replies)
        except psycopg.Error as exc:
            if not replies:
                # The message stays in its queue and comes back after its visibility timeout.
                log.error("dead_letter_failed", queue=self.queue, error=describe_error(exc))
                return
            # A reply that cannot be sent must not keep the message from its dead letter.
            log.warning("dead_letter_replies_dropped", queue=self.queue, error=describe_error(exc))
            try:
                await self._move_to_dead_letters(row, reason, ())
            except psycopg.Error as again:
                log.error("dead_letter_failed", queue=self.queue, error=describe_error(again))

    async def _move_to_dead_letters(self, row: Row, reason: str, replies: Sequence[Reply]) -> None:
        async with self._pool.connection() as conn:
            await dead_letter(
                conn,
                queue=self.queue,
                dead_letter_queue=self.dead_letter_queue,
                msg_id=row.msg_id,
                read_ct=row.read_ct,
                enqueued_at=row.enqueued_at,
                reason=reason,
                replies=replies,
            )

    # -- visibility ----------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        # Well inside the timeout, so an extension never arrives after the message reappeared.
        period = max(0.2, self.options.visibility_timeout_s / 3)
        while True:
            await asyncio.sleep(period)
            held = [*self._inflight, *self._committer.pending]
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
        # The committer finishes (the heartbeat still covering its messages), then stops.
        self._committer.close()
        await committer
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)


def _start(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A task for a handler; on Python 3.12+ it starts eagerly, so a handler that never
    blocks finishes without a trip through the event loop's queue."""
    if _EAGER:
        return asyncio.Task(coroutine, loop=asyncio.get_running_loop(), eager_start=True)  # type: ignore[call-arg]
    return asyncio.create_task(coroutine)


_EAGER = sys.version_info >= (3, 12)


def _options_log(options: ConsumerOptions) -> dict[str, Any]:
    return {
        "batch_size": options.batch_size,
        "concurrency": options.concurrency,
        "visibility_timeout_s": options.visibility_timeout_s,
        "max_deliveries": options.max_deliveries,
    }
