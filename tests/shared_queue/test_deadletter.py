"""Dead letters: kept with their reason, listed, and redriven as new messages."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from helpers import Running, bodies, count, eventually, holds, job, rows_are
from singularity.shared_queue import (
    Consumer,
    ConsumerOptions,
    DeadLetter,
    Delivery,
    JobRequest,
    Publisher,
    list_dead_letters,
    redrive,
)

FAST = ConsumerOptions(poll_interval_s=0.05, retry_base_s=0.05, max_deliveries=2)


async def test_a_fixed_handler_handles_what_was_dead_lettered_once_redriven(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    sent = [job(i) for i in range(3)]
    await Publisher(bus_pool).send_batch(queue, sent)
    await Publisher(bus_pool).send(queue, {"not": "a job"})

    async def broken(delivery: Delivery[JobRequest]) -> None:
        raise ConnectionError("sandbox down")

    async with Running(Consumer(bus_pool, queue, JobRequest, broken, options=FAST)):
        await eventually(rows_are(bus_pool, f"q_{queue}_dlq", 4))

    async with bus_pool.connection() as conn:
        letters = await list_dead_letters(conn, f"{queue}_dlq")
        assert all(isinstance(letter, DeadLetter) for _, letter in letters)
        reasons = sorted(letter.reason for _, letter in letters)  # type: ignore[union-attr]
        assert reasons[0].startswith("failed 2 times; last error: ConnectionError: sandbox down")
        assert reasons[-1].startswith("invalid message: id: Field required")
        moved, skipped = await redrive(conn, queue)
    assert (moved, skipped) == (4, 0)
    assert await count(bus_pool, f"q_{queue}_dlq") == 0
    assert await count(bus_pool, f"a_{queue}_dlq") == 4  # the redrive is on record

    handled: list[str] = []

    async def fixed(delivery: Delivery[JobRequest]) -> None:
        handled.append(delivery.message.id)

    async with Running(Consumer(bus_pool, queue, JobRequest, fixed, options=FAST)):
        await eventually(holds(lambda: len(handled) == 3))
        await eventually(rows_are(bus_pool, f"q_{queue}_dlq", 1))  # the bad one, again
    assert sorted(handled) == sorted(j.id for j in sent)
    [again] = await bodies(bus_pool, f"q_{queue}_dlq")
    assert again["read_ct"] == 1  # redriven messages start their delivery count afresh


async def test_redrive_leaves_foreign_messages_in_place(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    await Publisher(bus_pool).send(f"{queue}_dlq", {"written": "by hand"})
    async with bus_pool.connection() as conn:
        await conn.execute(
            f"SELECT pgmq.send('{queue}_dlq', x) FROM unnest(%s::jsonb[]) x",
            (['"a string"', "[1, 2]", f'"{"x" * 100_000}"'],),
        )
        assert await redrive(conn, queue) == (0, 4)
        letters = [letter for _, letter in await list_dead_letters(conn, f"{queue}_dlq")]
    assert letters[:3] == ['{"written": "by hand"}', '"a string"', "[1, 2]"]
    assert letters[3].startswith("(a message of about 100") and "not shown" in letters[3]


async def test_a_deep_original_is_dead_lettered_and_redriven_whole(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    # 10,000 levels: more than any Python JSON decoder takes. The original moves from the
    # queue to the letter, and back, inside the server: nothing here parses it.
    text = '{"id": "deep", "x": ' + "[" * 10_000 + "]" * 10_000 + "}"

    async def never(delivery: Delivery[JobRequest]) -> None:
        raise AssertionError("an invalid message reached the handler")

    async with bus_pool.connection() as conn:
        await conn.execute("SELECT pgmq.send(%s, %s::jsonb)", (queue, text))
    async with Running(Consumer(bus_pool, queue, JobRequest, never, options=FAST)):
        await eventually(rows_are(bus_pool, f"q_{queue}_dlq", 1))
    async with bus_pool.connection() as conn:
        [(_, letter)] = await list_dead_letters(conn, f"{queue}_dlq")
        assert isinstance(letter, DeadLetter), letter
        assert "recursion limit" in letter.reason
        assert await redrive(conn, queue) == (1, 0)
        cursor = await conn.execute(f"SELECT message = %s::jsonb FROM pgmq.q_{queue}", (text,))
        assert await cursor.fetchall() == [(True,)]
