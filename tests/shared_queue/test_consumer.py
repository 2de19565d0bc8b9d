"""The consumer runtime against a real pgmq: delivery, replies, retries, duplicates, shutdown."""

from __future__ import annotations

import asyncio

import pytest
from pgmq import SyncPGMQueue
from psycopg_pool import AsyncConnectionPool

from helpers import Running, bodies, count, eventually, holds, job, rows_are
from singularity.postgres.endpoint import Endpoint
from singularity.shared_queue import (
    Consumer,
    ConsumerOptions,
    Delivery,
    Handler,
    JobRequest,
    JobResult,
    Listener,
    LlmRequest,
    PermanentFailure,
    Publisher,
    Reply,
)
from singularity.shared_queue.messages import MAX_KEY_LENGTH

FAST = ConsumerOptions(poll_interval_s=0.05, retry_base_s=0.05, max_deliveries=3)


async def test_a_plain_pgmq_client_message_with_only_design_fields_is_handled(
    bus_pool: AsyncConnectionPool, bus_endpoint: Endpoint, queue: str
) -> None:
    # Sent by pgmq's own Python client: exactly the design's fields, nothing of ours.
    client = SyncPGMQueue(
        conn_string=bus_endpoint.conninfo(),  # libpq key=value form, also for a socket host
        init_extension=False,
    )
    msg_id = client.send(queue, {"id": "job-7", "code": "echo hi", "language": "bash"})
    client.pool.close()
    seen: list[Delivery[JobRequest]] = []

    async def handle(delivery: Delivery[JobRequest]) -> None:
        seen.append(delivery)

    async with Running(Consumer(bus_pool, queue, JobRequest, handle, options=FAST)):
        await eventually(rows_are(bus_pool, f"a_{queue}", 1))
    assert [d.message.code for d in seen] == ["echo hi"]
    assert seen[0].request_id == "job-7"  # the design's id names the request
    assert seen[0].msg_id == msg_id
    assert await count(bus_pool, f"q_{queue}") == 0


async def test_a_request_without_request_id_is_identified_by_its_msg_id(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    design_only = {
        "agent_id": "coder",
        "task_type": "coder",
        "messages": [{"role": "user", "content": "hi"}],
    }
    msg_id = await Publisher(bus_pool).send(queue, design_only)
    seen: list[str] = []

    async def handle(delivery: Delivery[LlmRequest]) -> None:
        seen.append(delivery.request_id)

    async with Running(Consumer(bus_pool, queue, LlmRequest, handle, options=FAST)):
        await eventually(holds(lambda: bool(seen)))
    assert seen == [str(msg_id)]


async def test_replies_are_sent_in_the_transaction_that_archives_the_request(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    results = f"{queue}_dlq"  # any queue serves as the reply queue here

    async def handle(delivery: Delivery[JobRequest]) -> Reply:
        return Reply(results, JobResult(request_id=delivery.request_id, output="ok"))

    sent = [job(i) for i in range(20)]
    await Publisher(bus_pool).send_batch(queue, sent)
    async with Running(Consumer(bus_pool, queue, JobRequest, handle, options=FAST)):
        await eventually(rows_are(bus_pool, f"q_{results}", 20))
    replies = await bodies(bus_pool, f"q_{results}")
    assert sorted(r["request_id"] for r in replies) == sorted(j.id for j in sent)
    assert await count(bus_pool, f"a_{queue}") == 20


async def test_two_messages_with_one_request_id_have_one_effect(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    results = f"{queue}_dlq"
    calls: list[int] = []

    async def handle(delivery: Delivery[JobRequest]) -> Reply:
        calls.append(delivery.msg_id)
        return Reply(results, JobResult(request_id=delivery.request_id, output="ok"))

    publisher = Publisher(bus_pool)
    duplicate, other = job(1, request_id="req-1"), job(2)
    # The same request published twice in one batch, and once more after it was handled.
    await publisher.send_batch(queue, [duplicate, duplicate, other])
    async with Running(Consumer(bus_pool, queue, JobRequest, handle, options=FAST)):
        await eventually(rows_are(bus_pool, f"a_{queue}", 3))
        await publisher.send(queue, duplicate)
        await eventually(rows_are(bus_pool, f"a_{queue}", 4))
    replies = [r["request_id"] for r in await bodies(bus_pool, f"q_{results}")]
    assert sorted(replies) == sorted(["req-1", other.id])
    assert len(calls) == 3  # the late copy was known as handled before its handler ran


async def test_a_redelivery_after_the_visibility_timeout_has_one_effect(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    results = f"{queue}_dlq"
    release_first = asyncio.Event()
    calls = 0

    async def slow_then_fast(delivery: Delivery[JobRequest]) -> Reply:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release_first.wait()  # outlives its visibility timeout
        return Reply(results, JobResult(request_id=delivery.request_id, output=str(calls)))

    first, second = outlived_and_standby(bus_pool, queue, slow_then_fast)
    await Publisher(bus_pool).send(queue, job(1))
    async with Running(first):
        await eventually(holds(lambda: calls == 1))
        async with Running(second):
            await eventually(rows_are(bus_pool, f"q_{results}", 1))
            release_first.set()
            await eventually(holds(lambda: first.stats.duplicates == 1))
    assert calls == 2
    assert [r["output"] for r in await bodies(bus_pool, f"q_{results}")] == ["2"]


def outlived_and_standby(
    pool: AsyncConnectionPool, queue: str, handler: Handler[JobRequest]
) -> tuple[Consumer[JobRequest], Consumer[JobRequest]]:
    """Two consumers with a visibility timeout of 1 s; the first has no heartbeat, so a
    message its handler holds longer than that is delivered again."""
    options = ConsumerOptions(poll_interval_s=0.05, visibility_timeout_s=1)
    first = Consumer(pool, queue, JobRequest, handler, options=options)
    first._heartbeat_loop = _no_heartbeat  # type: ignore[method-assign]
    return first, Consumer(pool, queue, JobRequest, handler, options=options)


async def _no_heartbeat() -> None:
    await asyncio.Event().wait()


async def test_the_heartbeat_keeps_a_long_handlers_message_invisible(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    deliveries: list[int] = []

    async def slow(delivery: Delivery[JobRequest]) -> None:
        deliveries.append(delivery.read_ct)
        await asyncio.sleep(2.5)  # more than twice the visibility timeout

    options = ConsumerOptions(poll_interval_s=0.05, visibility_timeout_s=1)
    await Publisher(bus_pool).send(queue, job(1))
    async with (
        Running(Consumer(bus_pool, queue, JobRequest, slow, options=options)),
        Running(Consumer(bus_pool, queue, JobRequest, slow, options=options)),
    ):
        await eventually(rows_are(bus_pool, f"a_{queue}", 1))
    assert deliveries == [1]


async def test_a_failing_handler_is_retried_with_backoff_then_succeeds(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    attempts: list[int] = []

    async def flaky(delivery: Delivery[JobRequest]) -> None:
        attempts.append(delivery.read_ct)
        if delivery.read_ct < 3:
            raise RuntimeError("provider hiccup")

    await Publisher(bus_pool).send(queue, job(1))
    consumer = Consumer(bus_pool, queue, JobRequest, flaky, options=FAST)
    async with Running(consumer):
        await eventually(rows_are(bus_pool, f"a_{queue}", 1))
    assert attempts == [1, 2, 3]
    assert consumer.stats.retried == 2
    assert await count(bus_pool, f"q_{queue}_dlq") == 0


async def test_a_message_that_keeps_failing_is_dead_lettered_with_the_last_error(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    async def broken(delivery: Delivery[JobRequest]) -> None:
        raise ValueError("no such language: cobol")

    sent = job(1)
    await Publisher(bus_pool).send(queue, sent)
    async with Running(Consumer(bus_pool, queue, JobRequest, broken, options=FAST)):
        await eventually(rows_are(bus_pool, f"q_{queue}_dlq", 1))
    [letter] = await bodies(bus_pool, f"q_{queue}_dlq")
    assert letter["reason"] == "failed 3 times; last error: ValueError: no such language: cobol"
    assert letter["original"]["id"] == sent.id
    assert letter["queue"] == queue
    assert letter["read_ct"] == 3
    assert await count(bus_pool, f"q_{queue}") == 0


async def test_an_unparseable_message_is_dead_lettered_at_once_and_the_loop_goes_on(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    handled: list[str] = []

    async def handle(delivery: Delivery[JobRequest]) -> None:
        handled.append(delivery.message.id)

    publisher = Publisher(bus_pool)
    await publisher.send(queue, {"id": "j", "language": "python"})  # no code
    await publisher.send(queue, {"text": "hello"})
    await publisher.send(queue, job(3))
    async with Running(Consumer(bus_pool, queue, JobRequest, handle, options=FAST)):
        await eventually(rows_are(bus_pool, f"q_{queue}_dlq", 2))
        await eventually(holds(lambda: len(handled) == 1))
    letters = await bodies(bus_pool, f"q_{queue}_dlq")
    assert letters[0]["reason"] == (
        "invalid message: a job of code names both `code` and `language`"
    )
    assert letters[0]["read_ct"] == 1
    assert letters[1]["reason"].startswith("invalid message: id: Field required")
    assert letters[1]["original"] == {"text": "hello"}


async def test_a_permanent_failure_is_dead_lettered_without_retries(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    async def refuse(delivery: Delivery[JobRequest]) -> None:
        raise PermanentFailure("language is not allowed")

    await Publisher(bus_pool).send(queue, job(1))
    async with Running(Consumer(bus_pool, queue, JobRequest, refuse, options=FAST)):
        await eventually(rows_are(bus_pool, f"q_{queue}_dlq", 1))
    [letter] = await bodies(bus_pool, f"q_{queue}_dlq")
    assert letter["reason"] == "handler refused it: language is not allowed"
    assert letter["read_ct"] == 1


async def test_a_message_delivered_too_often_is_dead_lettered_before_its_handler_runs(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    # As if consumers had crashed on it three times: read_ct is already at the maximum.
    msg_id = await Publisher(bus_pool).send(queue, job(1))
    async with bus_pool.connection() as conn:
        await conn.execute(f"UPDATE pgmq.q_{queue} SET read_ct = 3 WHERE msg_id = %s", (msg_id,))
    ran: list[int] = []

    async def handle(delivery: Delivery[JobRequest]) -> None:
        ran.append(delivery.msg_id)

    async with Running(Consumer(bus_pool, queue, JobRequest, handle, options=FAST)):
        await eventually(rows_are(bus_pool, f"q_{queue}_dlq", 1))
    assert ran == []
    [letter] = await bodies(bus_pool, f"q_{queue}_dlq")
    assert letter["reason"] == "delivered 3 times without being handled"


async def test_shutdown_finishes_or_releases_in_flight_messages_and_loses_none(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    sent = [job(i) for i in range(30)]
    await Publisher(bus_pool).send_batch(queue, sent)
    first_seen: list[str] = []

    async def slow(delivery: Delivery[JobRequest]) -> None:
        first_seen.append(delivery.message.id)
        await asyncio.sleep(60 if len(first_seen) > 10 else 0.01)

    options = ConsumerOptions(
        poll_interval_s=0.05, concurrency=15, visibility_timeout_s=60, shutdown_grace_s=0.3
    )
    async with Running(Consumer(bus_pool, queue, JobRequest, slow, options=options)):
        await eventually(holds(lambda: len(first_seen) >= 15))
    # Stopped with handlers stuck: their messages are visible again at once, not after 60 s.
    assert await count(bus_pool, f"a_{queue}") == 10
    second_seen: list[str] = []

    async def quick(delivery: Delivery[JobRequest]) -> None:
        second_seen.append(delivery.message.id)

    async with Running(Consumer(bus_pool, queue, JobRequest, quick, options=FAST)):
        await eventually(rows_are(bus_pool, f"a_{queue}", 30), seconds=5)
    archived = await bodies(bus_pool, f"a_{queue}")
    assert sorted(m["id"] for m in archived) == sorted(j.id for j in sent)
    assert len(second_seen) == 20


async def test_a_notification_wakes_the_consumer_long_before_its_poll(
    bus_pool: AsyncConnectionPool, bus_endpoint: Endpoint, queue: str
) -> None:
    listener = Listener(bus_endpoint)
    stop = asyncio.Event()
    listening = asyncio.create_task(listener.run(stop))
    got = asyncio.Event()

    async def handle(delivery: Delivery[JobRequest]) -> None:
        got.set()

    slow_poll = ConsumerOptions(poll_interval_s=30)
    consumer = Consumer(bus_pool, queue, JobRequest, handle, options=slow_poll, listener=listener)
    async with Running(consumer):
        await asyncio.wait_for(listener.connected.wait(), 5)
        await asyncio.sleep(0.3)  # the consumer's first reads are done; it now waits
        await Publisher(bus_pool).send(queue, job(1))
        await asyncio.wait_for(got.wait(), 5)  # far sooner than the 30 s poll
    stop.set()
    await listening


async def test_without_notifications_polling_still_delivers(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    got = asyncio.Event()

    async def handle(delivery: Delivery[JobRequest]) -> None:
        got.set()

    async with Running(Consumer(bus_pool, queue, JobRequest, handle, options=FAST)):
        await asyncio.sleep(0.1)
        await Publisher(bus_pool).send(queue, job(1))
        await asyncio.wait_for(got.wait(), 5)


@pytest.mark.parametrize("bad", ["Bad-Name", "x" * 48, "", "q;drop"])
async def test_queue_names_are_validated(bus_pool: AsyncConnectionPool, bad: str) -> None:
    async def handle(delivery: Delivery[JobRequest]) -> None:
        return None

    with pytest.raises(ValueError, match="not a valid queue name"):
        Consumer(bus_pool, bad, JobRequest, handle)


async def test_a_lost_message_without_replies_counts_as_a_duplicate_not_as_handled(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    release_first = asyncio.Event()
    calls = 0

    async def slow_then_fast(delivery: Delivery[JobRequest]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release_first.wait()

    first, second = outlived_and_standby(bus_pool, queue, slow_then_fast)
    await Publisher(bus_pool).send(queue, job(1))
    async with Running(first):
        await eventually(holds(lambda: calls == 1))
        async with Running(second):
            await eventually(rows_are(bus_pool, f"a_{queue}", 1))
        release_first.set()
        await eventually(holds(lambda: first.stats.duplicates == 1))
    # Whichever consumer took the redelivery (the first may read it again itself), the
    # message was handled once; the stuck first delivery counted as a duplicate.
    assert first.stats.handled + second.stats.handled == 1


async def test_a_request_key_too_long_to_archive_is_dead_lettered_and_its_batch_goes_on(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    # Found by tests/shared_queue/test_fuzz_messages.py: a key the model does not check (an
    # `id` an LLM request keeps as an extra field) of 3000 characters passed validation, and
    # the archive's key index refused it, failing the commit of its whole batch, again and
    # again until every message of the batch was dead-lettered.
    handled: list[str] = []

    async def handle(delivery: Delivery[LlmRequest]) -> None:
        handled.append(delivery.request_id)

    design = {"agent_id": "a", "task_type": "t", "messages": [{"role": "user", "content": "hi"}]}
    long_key = {**design, "id": "k" * (MAX_KEY_LENGTH + 1)}
    await Publisher(bus_pool).send_batch(queue, [long_key, {**design, "request_id": "fine"}])
    async with Running(Consumer(bus_pool, queue, LlmRequest, handle, options=FAST)):
        await eventually(rows_are(bus_pool, f"a_{queue}", 1))
        await eventually(rows_are(bus_pool, f"q_{queue}_dlq", 1))
    assert handled == ["fine"]
    [letter] = await bodies(bus_pool, f"q_{queue}_dlq")
    assert letter["reason"] == (
        f"its request key is {MAX_KEY_LENGTH + 1} characters long; at most {MAX_KEY_LENGTH}"
    )
    assert letter["read_ct"] == 1
