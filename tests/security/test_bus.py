"""A publisher on one queue attacks the bus: what it sends must not stop, block or fool a
consumer.

The attacker may send anything PostgreSQL takes as jsonb to a queue its role publishes to
(through pgmq, or SQL that builds the body in the server). Each test sends the attack to a
real consumer on the real bus, checks where the message went and why, and then checks that
the consumer still serves a good message.

Dead letters are looked at in SQL (`message->>'reason'`): a client that decodes a
10,000-level body into Python objects fails on its own recursion limit.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from helpers import Running, count, eventually, holds, job
from nexus_support import RunningNexus, wait_for_message
from singularity.config import Settings
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database, Role
from singularity.shared_queue import (
    Consumer,
    ConsumerOptions,
    DeadLetter,
    Delivery,
    JobRequest,
    Publisher,
    ReplyTargets,
    list_dead_letters,
)
from singularity.shared_queue.deadletter import MAX_REASON_LENGTH
from singularity.testing.openai_server import MockOpenAI
from singularity.testing.openai_server import Reply as LlmReply

FAST = ConsumerOptions(poll_interval_s=0.05, retry_base_s=0.05, max_deliveries=3)


def llm_body(reply_to: str, **fields: Any) -> dict[str, Any]:
    """A valid llm_requests body with a fresh request_id."""
    return {
        "request_id": str(uuid.uuid4()),
        "reply_to": reply_to,
        "agent_id": "attacker",
        "task_type": "classifier",
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }


def with_raw_field(body: dict[str, Any], name: str, raw_json: str) -> str:
    """`body` as JSON text with one more field written as given (json.dumps would recurse)."""
    return json.dumps(body)[:-1] + f', "{name}": {raw_json}}}'


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def send_raw(pool: AsyncConnectionPool, queue: str, text: str) -> int:
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT pgmq.send(%s, %s::jsonb)", (queue, text))
        ).fetchone()
    assert row is not None
    return int(row[0])


async def letter(pool: AsyncConnectionPool, dlq: str, msg_id: int) -> dict[str, Any] | None:
    """The dead letter of msg_id, its original left in the server (only its size comes back)."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                f"SELECT message->>'reason', (message->>'read_ct')::int, "
                f"octet_length((message->'original')::text) FROM pgmq.q_{dlq} "
                "WHERE (message->>'msg_id')::bigint = %s",
                (msg_id,),
            )
        ).fetchone()
    if row is None:
        return None
    return {"reason": row[0], "read_ct": row[1], "original_bytes": row[2]}


async def dead_lettered(
    pool: AsyncConnectionPool, dlq: str, msg_id: int, seconds: float = 20.0
) -> dict[str, Any]:
    found: dict[str, Any] | None = None

    async def check() -> bool:
        nonlocal found
        found = await letter(pool, dlq, msg_id)
        return found is not None

    await eventually(check, seconds)
    assert found is not None
    return found


async def same_original(pool: AsyncConnectionPool, dlq: str, msg_id: int, text: str) -> bool:
    """Whether the letter keeps the original whole (compared in the server)."""
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                f"SELECT message->'original' = %s::jsonb FROM pgmq.q_{dlq} "
                "WHERE (message->>'msg_id')::bigint = %s",
                (text, msg_id),
            )
        ).fetchone()
    return bool(row and row[0])


async def forget_letters(pool: AsyncConnectionPool, dlq: str, ids: list[int]) -> None:
    """Later tests read the catalog's dead-letter queues with a decoding client."""
    async with pool.connection() as conn:
        await conn.execute(
            f"DELETE FROM pgmq.q_{dlq} WHERE (message->>'msg_id')::bigint = ANY(%s)", (ids,)
        )


async def still_answers(
    nexus: RunningNexus, llm: MockOpenAI, pool: AsyncConnectionPool, reply_queue: str
) -> None:
    """Nexus is still running and answers a good request."""
    assert not nexus.task.done()
    llm.script("alpha", LlmReply("still here"))
    good = llm_body(reply_queue)
    await Publisher(pool).send("llm_requests", good)
    answer = await wait_for_message(pool, reply_queue, request_id=good["request_id"])
    assert answer["result"] == "still here", answer


# -- finding 3 ------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [3_000, 10_000])
async def test_finding_3_deeply_nested_json_is_dead_lettered(
    nexus: RunningNexus,
    llm: MockOpenAI,
    bus_pool: AsyncConnectionPool,
    reply_queue: str,
    depth: int,
) -> None:
    # Before: RecursionError while deciding the message was invalid; Nexus exited, and every
    # restart died on the same message.
    body = llm_body(reply_queue)
    text = with_raw_field(body, "payload", nested(depth))
    msg_id = await send_raw(bus_pool, "llm_requests", text)
    try:
        found = await dead_lettered(bus_pool, "llm_requests_dlq", msg_id)
        assert found["read_ct"] == 1  # at once, not after crashes and redeliveries
        assert found["reason"].startswith("invalid message: ")
        assert "recursion limit" in found["reason"]
        assert await same_original(bus_pool, "llm_requests_dlq", msg_id, text)
        # The asker hears why, though its body could not be parsed (the server picked out
        # its request_id and reply_to).
        answer = await wait_for_message(bus_pool, reply_queue, request_id=body["request_id"])
        assert answer["error"]["code"] and "recursion limit" in answer["error"]["message"]
        await still_answers(nexus, llm, bus_pool, reply_queue)
    finally:
        await forget_letters(bus_pool, "llm_requests_dlq", [msg_id])


@pytest.fixture
async def small_limit_nexus(
    nexus_settings: Settings, cluster: Cluster, llm: MockOpenAI
) -> AsyncIterator[RunningNexus]:
    settings = nexus_settings.model_copy(update={"shared_queue_max_message_bytes": 64 * 1024})
    async with RunningNexus(settings, cluster) as running:
        yield running


async def test_finding_3_a_message_over_the_size_limit_is_dead_lettered_unread(
    small_limit_nexus: RunningNexus,
    llm: MockOpenAI,
    bus_pool: AsyncConnectionPool,
    reply_queue: str,
) -> None:
    body = llm_body(reply_queue, messages=[{"role": "user", "content": "x" * 1_000_000}])
    text = json.dumps(body)
    msg_id = await send_raw(bus_pool, "llm_requests", text)
    try:
        found = await dead_lettered(bus_pool, "llm_requests_dlq", msg_id)
        assert found["read_ct"] == 1
        assert "bytes long; at most 65536 are read" in found["reason"]
        assert "SHARED_QUEUE_MAX_MESSAGE_BYTES" in found["reason"]
        assert len(found["reason"]) < 200  # the reason names the size, it quotes nothing
        assert await same_original(bus_pool, "llm_requests_dlq", msg_id, text)  # kept whole
        answer = await wait_for_message(bus_pool, reply_queue, request_id=body["request_id"])
        assert "SHARED_QUEUE_MAX_MESSAGE_BYTES" in answer["error"]["message"]
        await still_answers(small_limit_nexus, llm, bus_pool, reply_queue)
    finally:
        await forget_letters(bus_pool, "llm_requests_dlq", [msg_id])


async def test_finding_3_the_size_limit_is_a_setting(nexus_settings: Settings) -> None:
    from singularity.shared_queue import consumer_options

    assert consumer_options(nexus_settings).max_message_bytes == 8 * 1024 * 1024
    tuned = nexus_settings.model_copy(update={"shared_queue_max_message_bytes": 100_000})
    assert consumer_options(tuned).max_message_bytes == 100_000


# Bodies PostgreSQL stores, each either served or dead-lettered with a reason at once.
ODD_BODIES: dict[str, tuple[str, str]] = {
    "a list": ("[1, 2, 3]", "dead"),
    "a string": ('"llm_requests"', "dead"),
    "a number": ("42", "dead"),
    "null": ("null", "dead"),
    "true": ("true", "dead"),
    "an empty object": ("{}", "dead"),
    # jsonb writes 1e400 out in full: 401 digits, an integer Python reads exactly.
    "1e400": ("{BODY, 'cost': 1e400}", "served"),
    "a cost of 1e400": ("{BODY, 'cost_usd': 1e400}", "served"),
    "a 5,000-digit integer": ("{BODY, 'n': 1" + "0" * 5000 + "}", "dead"),
    "a request_id of 100 kB": ("{BODY, 'request_id': 'LONG'}", "dead"),
    "a reply_to of 100 kB": ("{BODY, 'reply_to': 'LONG'}", "dead"),
    "a field name of 100 kB": ("{BODY, 'LONG': 1}", "served"),
    "an escaped NUL as text": ("{BODY, 'note': '\\\\u0000'}", "served"),
    "bidi and zero-width text": ("{BODY, 'note': '\u202eevil\u200b'}", "served"),
    "150 levels (parseable)": ("{BODY, 'context': " + nested(150) + "}", "served"),
    "a schema_version from the future": ("{BODY, 'schema_version': 2}", "dead"),
    "a schema_version of 0": ("{BODY, 'schema_version': 0}", "dead"),
    "4 MB of text (under the limit)": ("{BODY, 'note': 'BIG'}", "served"),
}


def _odd_text(template: str, body: dict[str, Any]) -> str:
    if not template.startswith("{BODY"):
        return template
    fields = template.removeprefix("{BODY, ").removesuffix("}")
    fields = fields.replace("'", '"').replace("LONG", "L" * 100_000).replace("BIG", "b" * 4_000_000)
    return json.dumps(body)[:-1] + ", " + fields + "}"


async def test_finding_3_odd_types_and_values_are_served_or_dead_lettered_at_once(
    nexus: RunningNexus,
    llm: MockOpenAI,
    bus_pool: AsyncConnectionPool,
    reply_queue: str,
) -> None:
    served = [name for name, (_, fate) in ODD_BODIES.items() if fate == "served"]
    llm.script("alpha", *[LlmReply("ok") for _ in served])
    sent: dict[str, tuple[int, dict[str, Any]]] = {}
    for name, (template, _) in ODD_BODIES.items():
        body = llm_body(reply_queue)
        sent[name] = (await send_raw(bus_pool, "llm_requests", _odd_text(template, body)), body)
    try:
        for name, (msg_id, body) in sent.items():
            expected = ODD_BODIES[name][1]
            if expected == "dead":
                found = await dead_lettered(bus_pool, "llm_requests_dlq", msg_id)
                assert found["read_ct"] == 1, name
                assert found["reason"].strip(), name
                assert len(found["reason"]) <= MAX_REASON_LENGTH + 50, (name, found["reason"])
            else:
                await eventually(holds_archived(bus_pool, msg_id), 20)
                answer = await wait_for_message(
                    bus_pool, reply_queue, request_id=body["request_id"]
                )
                assert answer["result"] == "ok", (name, answer)
        await still_answers(nexus, llm, bus_pool, reply_queue)
    finally:
        await forget_letters(bus_pool, "llm_requests_dlq", [m for m, _ in sent.values()])


def holds_archived(pool: AsyncConnectionPool, msg_id: int) -> Any:
    async def check() -> bool:
        async with pool.connection() as conn:
            row = await (
                await conn.execute("SELECT 1 FROM pgmq.a_llm_requests WHERE msg_id = %s", (msg_id,))
            ).fetchone()
        return row is not None

    return check


# -- attacks of our own ---------------------------------------------------------------------


async def test_attack_a_message_the_server_cannot_turn_into_text_does_not_block_the_queue(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    # 180 M control characters: 180 MB as jsonb, but more than PostgreSQL's 1 GB as text
    # (each is written \u0001). Before, every read of the batch failed, forever.
    async with bus_pool.connection() as conn:
        await conn.execute(
            "SELECT pgmq.send(%s, jsonb_build_object('id', 'poison', 'code', "
            "repeat(chr(1), 180000000), 'language', 'python'))",
            (queue,),
        )
    good = job(1)
    await Publisher(bus_pool).send(queue, good)
    handled: list[str] = []

    async def handle(delivery: Delivery[JobRequest]) -> None:
        handled.append(delivery.request_id)

    async with Running(Consumer(bus_pool, queue, JobRequest, handle, options=FAST)) as consumer:
        await eventually(holds(lambda: handled == [good.id]), 120)
        await eventually(lambda: count_is(bus_pool, f"q_{queue}_dlq", 1), 60)
        async with bus_pool.connection() as conn:
            reason, code_bytes = await (
                await conn.execute(
                    f"SELECT message->>'reason', octet_length(message->'original'->>'code') "
                    f"FROM pgmq.q_{queue}_dlq"
                )
            ).fetchone() or (None, None)
        assert reason is not None and "the server cannot read it" in reason, reason
        assert code_bytes == 180_000_000  # kept whole
        assert consumer.stats.snapshot()["dead_lettered"] == 1
        # An operator can list it (`queue dlq list`): its original is named, not printed.
        async with bus_pool.connection() as conn:
            [(_, listed)] = await list_dead_letters(conn, f"{queue}_dlq")
        assert isinstance(listed, DeadLetter), listed
        assert "not shown" in str(listed.original)


async def count_is(pool: AsyncConnectionPool, table: str, expected: int) -> bool:
    return await count(pool, table) == expected


async def test_attack_reply_to_a_dead_letter_queue_forges_no_dead_letter(
    nexus: RunningNexus,
    llm: MockOpenAI,
    bus_pool: AsyncConnectionPool,
    reply_queue: str,
) -> None:
    # Nexus may send to llm_requests_dlq (it dead-letters there): an answer sent there on an
    # attacker's word would sit among the dead letters as if it were one.
    body = llm_body("llm_requests_dlq")
    msg_id = await send_raw(bus_pool, "llm_requests", json.dumps(body))
    try:
        found = await dead_lettered(bus_pool, "llm_requests_dlq", msg_id)
        assert "is a dead-letter queue" in found["reason"]
        async with bus_pool.connection() as conn:
            forged = await (
                await conn.execute(
                    "SELECT count(*) FROM pgmq.q_llm_requests_dlq WHERE message ? 'result'"
                )
            ).fetchone()
        assert forged == (0,)
        await still_answers(nexus, llm, bus_pool, reply_queue)
    finally:
        await forget_letters(bus_pool, "llm_requests_dlq", [msg_id])


async def test_attack_reply_to_a_request_queue_is_refused(cluster: Cluster) -> None:
    # Genesis publishes llm_requests (its evolution runs ask for mutations): a job whose
    # reply_to names that queue would make Genesis send its answer to Nexus as a request.
    pool = await open_pool(
        cluster.service(Role.GENESIS, Database.SHARED_QUEUE), name="test-genesis", max_size=2
    )
    try:
        targets = ReplyTargets(pool)
        problem = await targets.problem("llm_requests")
        assert problem is not None and "queue of requests" in problem
        assert "dead-letter" in (await targets.problem("job_requests_dlq") or "")
        assert await targets.problem("job_results") is None  # its real answers still go out
    finally:
        await pool.close()


async def test_attack_a_colliding_request_id_gets_no_second_answer(
    nexus: RunningNexus,
    llm: MockOpenAI,
    bus_pool: AsyncConnectionPool,
    reply_queue: str,
) -> None:
    llm.script("alpha", LlmReply("genuine"))
    genuine = llm_body(reply_queue)
    await Publisher(bus_pool).send("llm_requests", genuine)
    await wait_for_message(bus_pool, reply_queue, request_id=genuine["request_id"])
    # The same request_id again, asking something else: archived as handled, no effect.
    forged = {**genuine, "messages": [{"role": "user", "content": "say: approved"}]}
    msg_id = await Publisher(bus_pool).send("llm_requests", forged)
    await eventually(holds_archived(bus_pool, msg_id), 20)
    async with bus_pool.connection() as conn:
        answers = await (
            await conn.execute(
                f"SELECT message->>'result' FROM pgmq.q_{reply_queue} "
                "WHERE message->>'request_id' = %s",
                (genuine["request_id"],),
            )
        ).fetchall()
    assert answers == [("genuine",)]
    await still_answers(nexus, llm, bus_pool, reply_queue)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RecursionError("maximum recursion depth exceeded")


@pytest.mark.parametrize(
    "error",
    [_Unprintable(), RecursionError("deep"), ValueError("x" * 5_000_000)],
    ids=["unprintable", "recursion", "huge-message"],
)
async def test_attack_a_handler_that_always_fails_oddly_is_dead_lettered_and_the_loop_goes_on(
    bus_pool: AsyncConnectionPool, queue: str, error: Exception
) -> None:
    handled: list[str] = []

    async def handle(delivery: Delivery[JobRequest]) -> None:
        if delivery.message.code == "poison":
            raise error
        handled.append(delivery.request_id)

    options = ConsumerOptions(
        poll_interval_s=0.05, retry_base_s=0.05, max_deliveries=3, visibility_timeout_s=60
    )
    poison = JobRequest(id="poison-1", code="poison", language="python")
    msg_id = await Publisher(bus_pool).send(queue, poison)
    async with Running(Consumer(bus_pool, queue, JobRequest, handle, options=options)) as consumer:
        # Before, an exception whose text could not be made escaped the retry logic: the
        # message came back only after its visibility timeout (a minute here), each time.
        found = await dead_lettered(bus_pool, f"{queue}_dlq", msg_id, seconds=15)
        assert found["reason"].startswith("failed 3 times; last error: ")
        assert len(found["reason"]) <= MAX_REASON_LENGTH + 50
        good = job(2)
        await Publisher(bus_pool).send(queue, good)
        await eventually(holds(lambda: handled == [good.id]))
        assert consumer.stats.snapshot()["dead_lettered"] >= 1


async def test_attack_a_flood_of_invalid_messages_does_not_starve_valid_ones(
    bus_pool: AsyncConnectionPool, queue: str
) -> None:
    handled: list[str] = []

    async def handle(delivery: Delivery[JobRequest]) -> None:
        handled.append(delivery.request_id)

    # 1,000 invalid messages with the valid ones among them, in one batch each 100.
    valid = [job(i) for i in range(10)]
    bodies: list[Any] = []
    for i in range(1000):
        bodies.append({"id": f"junk-{i}", "code": ["not", "text"], "language": "python"})
        if i % 100 == 50:
            bodies.append(json.loads(valid[i // 100].to_json()))
    await Publisher(bus_pool).send_batch(queue, bodies)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with Running(Consumer(bus_pool, queue, JobRequest, handle, options=FAST)):
        await eventually(holds(lambda: len(handled) == len(valid)), 60)
        took = loop.time() - started
        await eventually(lambda: count_is(bus_pool, f"q_{queue}_dlq", 1000), 60)
    assert sorted(handled) == sorted(j.id for j in valid)
    assert took < 30, took
