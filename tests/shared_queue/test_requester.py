"""The durable requester against the real bus: a request is recorded, sent once and answered;
asked again after a crash it is resumed (answered at once, waited for, or sent) and never
asked twice; an answer recorded by another process is found; hostile answers change nothing.

The ledger here keeps its book in memory; two requesters over one book are two processes
over one database."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError
from structlog.testing import capture_logs

from helpers import Running, bodies, count, eventually, holds, rows_are
from singularity.postgres.connect import async_connection
from singularity.postgres.endpoint import Endpoint
from singularity.shared_queue import (
    BusMessage,
    Consumer,
    ConsumerOptions,
    Delivery,
    LlmRequest,
    LlmResult,
    Publisher,
    Recorded,
    Reply,
    Requester,
    RequestTimedOut,
    Route,
    ensure_queue,
)

FAST = ConsumerOptions(poll_interval_s=0.05, retry_base_s=0.05, max_deliveries=2)
ANSWERER = "the test answerer"


@dataclass
class Book:
    """What a service's database would hold: requests by id, and the key of each."""

    requests: dict[str, Recorded] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


class MemoryLedger:
    def __init__(self, book: Book) -> None:
        self.book = book

    async def find(self, key: str) -> Recorded | None:
        request_id = self.book.keys.get(key)
        return self.book.requests[request_id] if request_id else None

    async def record(self, key: str | None, request: Recorded) -> bool:
        if key is not None:
            if key in self.book.keys:
                return False
            self.book.keys[key] = request.request_id
        self.book.requests[request.request_id] = request
        return True

    async def mark_sent(self, request_id: str) -> None:
        self._update(request_id, sent=True)

    async def answer(self, request_id: str) -> dict[str, Any] | None:
        return self.book.requests[request_id].answer

    async def record_answer(self, request_id: str, answer: BusMessage) -> dict[str, Any] | None:
        recorded = self.book.requests.get(request_id)
        if recorded is None:
            return None
        if recorded.answer is None:  # the first answer counts
            self._update(request_id, answer=answer.model_dump(mode="json"))
        return self.book.requests[request_id].answer

    def _update(self, request_id: str, **changes: Any) -> None:
        self.book.requests[request_id] = dataclasses.replace(
            self.book.requests[request_id], **changes
        )


@pytest.fixture
async def replies(bus_endpoint: Endpoint) -> AsyncIterator[str]:
    """A fresh reply queue (with its dead-letter queue)."""
    name = f"test_replies_{uuid.uuid4().hex[:8]}"
    async with async_connection(bus_endpoint) as conn:
        await ensure_queue(conn, name)
        await ensure_queue(conn, name + "_dlq", wake=False)
    yield name
    async with async_connection(bus_endpoint) as conn:
        for victim in (name, name + "_dlq"):
            await conn.execute("SELECT pgmq.drop_queue(%s)", (victim,))


@dataclass
class Answerer:
    """Answers the requests of a queue (as Nexus would), and counts what it was asked."""

    asked: list[str] = field(default_factory=list)

    async def __call__(self, delivery: Delivery[LlmRequest]) -> Reply:
        self.asked.append(delivery.request_id)
        text = f"echo: {delivery.message.messages[-1].content}"
        answer = LlmResult(request_id=delivery.request_id, result=text, model="m")
        return Reply(delivery.message.reply_to or "", answer)


class Side:
    """One process: its requester (over the shared book), and its consumer of the answers."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        book: Book,
        queue: str,
        replies: str,
        ledger: type[MemoryLedger] = MemoryLedger,
    ) -> None:
        routes = {queue: Route(replies, ANSWERER, hint=" Ask again to resume.")}
        self.requester = Requester(Publisher(pool).send, ledger(book), routes)
        self.inbox = Consumer(pool, replies, LlmResult, self.requester.handle, options=FAST)


def ask_body(text: str) -> dict[str, Any]:
    return {"agent_id": "t", "task_type": "chat", "messages": [{"role": "user", "content": text}]}


@contextlib.asynccontextmanager
async def answering(pool: AsyncConnectionPool, queue: str) -> AsyncIterator[Answerer]:
    answerer = Answerer()
    async with Running(Consumer(pool, queue, LlmRequest, answerer, options=FAST)):
        yield answerer


async def _sent(pool: AsyncConnectionPool, queue: str) -> list[dict[str, Any]]:
    return await bodies(pool, f"q_{queue}") + await bodies(pool, f"a_{queue}")


async def test_a_request_is_recorded_sent_once_and_answered(
    bus_pool: AsyncConnectionPool, queue: str, replies: str
) -> None:
    book = Book()
    side = Side(bus_pool, book, queue, replies)
    async with answering(bus_pool, queue) as answerer, Running(side.inbox):
        answer = await side.requester.ask(queue, ask_body("hi"), key="step-1", timeout_s=10)
    assert answer["result"] == "echo: hi"
    (recorded,) = book.requests.values()
    assert recorded.sent and recorded.answer == answer
    assert recorded.message["reply_to"] == replies
    assert answerer.asked == [recorded.request_id] == [answer["request_id"]]


async def test_asked_again_when_answered_it_returns_the_answer_at_once(
    bus_pool: AsyncConnectionPool, queue: str, replies: str
) -> None:
    answer = {"request_id": "r-1", "result": "recorded before", "model": "m"}
    book = Book({"r-1": Recorded("r-1", queue, ask_body("x"), sent=True, answer=answer)})
    book.keys["step-1"] = "r-1"
    side = Side(bus_pool, book, queue, replies)
    # No answerer, no inbox: the answer can only come from the ledger.
    got = await side.requester.ask(queue, ask_body("asked again"), key="step-1", timeout_s=0.2)
    assert got == answer
    assert await count(bus_pool, f"q_{queue}") == 0


async def test_asked_again_when_sent_it_waits_and_never_sends_again(
    bus_pool: AsyncConnectionPool, queue: str, replies: str
) -> None:
    book = Book()
    before = Side(bus_pool, book, queue, replies)
    # The first process sends, then dies while waiting (nobody answers yet).
    asking = asyncio.create_task(
        before.requester.ask(queue, ask_body("once"), key="step-1", timeout_s=30)
    )
    await eventually(holds(lambda: any(r.sent for r in book.requests.values())))
    asking.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asking
    after = Side(bus_pool, book, queue, replies)
    async with answering(bus_pool, queue) as answerer, Running(after.inbox):
        answer = await after.requester.ask(queue, ask_body("twice"), key="step-1", timeout_s=10)
    assert answer["result"] == "echo: once"  # the recorded request, not the new body
    assert len(answerer.asked) == 1
    assert len(await _sent(bus_pool, queue)) == 1


async def test_asked_again_when_recorded_but_not_sent_it_sends_the_recorded_request(
    bus_pool: AsyncConnectionPool, queue: str, replies: str
) -> None:
    # The first process recorded the request and died before sending it.
    message = {**ask_body("recorded"), "request_id": "r-2", "reply_to": replies}
    book = Book({"r-2": Recorded("r-2", queue, message)}, {"step-1": "r-2"})
    side = Side(bus_pool, book, queue, replies)
    async with answering(bus_pool, queue) as answerer, Running(side.inbox):
        answer = await side.requester.ask(queue, ask_body("new"), key="step-1", timeout_s=10)
    assert (answer["request_id"], answer["result"]) == ("r-2", "echo: recorded")
    assert answerer.asked == ["r-2"]
    assert [m["request_id"] for m in await _sent(bus_pool, queue)] == ["r-2"]
    assert book.requests["r-2"].sent


async def test_an_answer_recorded_by_another_process_is_found_by_polling(
    bus_pool: AsyncConnectionPool, queue: str, replies: str
) -> None:
    book = Book()
    asker, other = Side(bus_pool, book, queue, replies), Side(bus_pool, book, queue, replies)
    # Only the other process consumes the answers: the asker hears nothing in-process.
    async with answering(bus_pool, queue), Running(other.inbox):
        answer = await asker.requester.ask(queue, ask_body("far"), key="step-1", timeout_s=10)
    assert answer["result"] == "echo: far"


async def test_an_answer_consumed_here_wakes_its_waiter_at_once(
    bus_pool: AsyncConnectionPool, queue: str, replies: str
) -> None:
    class Unpolled(MemoryLedger):
        async def answer(self, request_id: str) -> dict[str, Any] | None:
            return None  # polling finds nothing: only the wake-up can answer

    side = Side(bus_pool, Book(), queue, replies, ledger=Unpolled)
    async with answering(bus_pool, queue), Running(side.inbox):
        answer = await side.requester.ask(queue, ask_body("near"), key="step-1", timeout_s=10)
    assert answer["result"] == "echo: near"


async def test_two_waiters_of_one_request_get_its_one_answer(
    bus_pool: AsyncConnectionPool, queue: str, replies: str
) -> None:
    book = Book()
    here, there = Side(bus_pool, book, queue, replies), Side(bus_pool, book, queue, replies)
    waiting = [
        asyncio.create_task(here.requester.ask(queue, ask_body(f"{n}"), key="k", timeout_s=10))
        for n in range(3)
    ]
    await eventually(holds(lambda: any(r.sent for r in book.requests.values())))
    waiting.append(
        asyncio.create_task(there.requester.ask(queue, ask_body("3"), key="k", timeout_s=10))
    )
    async with answering(bus_pool, queue) as answerer, Running(here.inbox):
        answers = await asyncio.gather(*waiting)
    assert len(answerer.asked) == 1
    assert len({json.dumps(a, sort_keys=True) for a in answers}) == 1
    assert len(await _sent(bus_pool, queue)) == 1


async def test_no_answer_in_time_says_where_and_who_and_asking_again_resumes(
    bus_pool: AsyncConnectionPool, queue: str, replies: str
) -> None:
    book = Book()
    side = Side(bus_pool, book, queue, replies)
    with pytest.raises(RequestTimedOut) as timed_out:
        await side.requester.ask(queue, ask_body("late"), key="step-1", timeout_s=0.3)
    (request_id,) = book.requests
    assert str(timed_out.value) == (
        f"no answer to {queue} request {request_id} on {replies} after 0.3 s: "
        f"is {ANSWERER} running? Ask again to resume."
    )
    async with answering(bus_pool, queue) as answerer, Running(side.inbox):
        answer = await side.requester.ask(queue, ask_body("late"), key="step-1", timeout_s=10)
    assert answer["request_id"] == request_id
    assert answerer.asked == [request_id]


async def test_hostile_and_unmatched_answers_are_logged_and_change_nothing(
    bus_pool: AsyncConnectionPool, queue: str, replies: str
) -> None:
    book = Book()
    side = Side(bus_pool, book, queue, replies)
    with capture_logs() as logs:
        async with Running(side.inbox):
            asking = asyncio.create_task(
                side.requester.ask(queue, ask_body("real"), key="step-1", timeout_s=20)
            )
            await eventually(holds(lambda: any(r.sent for r in book.requests.values())))
            (request_id,) = book.requests
            hostile: list[Any] = [
                {"request_id": "nobody-asked", "result": "forged", "model": "m"},
                {"request_id": request_id, "result": {"not": "text"}, "model": "m"},
                {"request_id": request_id},  # neither a result nor an error
                [request_id],
                "just text",
            ]
            async with bus_pool.connection() as conn:
                for body in hostile:
                    await conn.execute(
                        "SELECT pgmq.send(%s, %s::jsonb)", (replies, json.dumps(body))
                    )
            await eventually(rows_are(bus_pool, f"q_{replies}_dlq", 4))
            await eventually(rows_are(bus_pool, f"a_{replies}", 1))  # the unmatched one
            assert not asking.done()
            async with answering(bus_pool, queue):
                answer = await asking
    assert answer["result"] == "echo: real"
    unmatched = [e for e in logs if e["event"] == "result_unmatched"]
    assert [e["request_id"] for e in unmatched] == ["nobody-asked"]
    assert len([e for e in logs if e["event"] == "dead_lettered"]) == 4  # the wrong shapes
    assert book.requests[request_id].answer == answer
    stray = LlmResult(request_id="nobody-else", result="r", model="m")
    assert await side.requester.received("nobody-else", stray) is None


async def test_a_malformed_request_is_refused_before_it_is_recorded_or_sent(
    bus_pool: AsyncConnectionPool,
) -> None:
    book = Book()
    routes = {"llm_requests": Route("llm_results", ANSWERER)}
    requester = Requester(Publisher(bus_pool).send, MemoryLedger(book), routes)
    before = await count(bus_pool, "q_llm_requests")
    with pytest.raises(ValidationError, match="messages"):
        await requester.ask("llm_requests", {"agent_id": "a", "task_type": "chat"}, timeout_s=1)
    with pytest.raises(ValueError, match="no reply queue is known for requests on 'elsewhere'"):
        await requester.ask("elsewhere", ask_body("x"), timeout_s=1)
    assert book.requests == {}
    assert await count(bus_pool, "q_llm_requests") == before
