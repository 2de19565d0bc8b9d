"""Asking durably over the bus: record a request, publish it once, wait for its answer, and
resume after a crash without asking (or paying) twice.

The requester keeps no state of its own that matters: every request lives in a *ledger* that
the asking service implements over its own database (the bus never reads a service's
database). A request asked under a `key` (a task's step, say) is the same request every time:

- asked again and already answered, it returns the recorded answer at once;
- recorded and sent, it is waited for, never sent again;
- recorded and not sent (the process died in between), it is sent, then waited for.

An answer consumed by this process (`handle`, as a consumer's handler) wakes its waiters at
once; an answer recorded by another process is found by polling the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import structlog

from singularity.errors import SingularityError
from singularity.shared_queue.catalog import queue_spec
from singularity.shared_queue.delivery import Delivery
from singularity.shared_queue.messages import BusMessage

__all__ = [
    "Answered",
    "Draft",
    "Ledger",
    "Recorded",
    "RequestTimedOut",
    "Requester",
    "Route",
    "Send",
]

log = structlog.get_logger(__name__)

# A waiting call looks in its ledger this soon after sending, then less and less often, up
# to the poll interval: a quick answer from another process is not kept waiting a full poll.
_FIRST_POLL_S = 0.02
_POLL_GROWTH = 1.5
# Recording under a key another caller took first is retried this often before giving up
# (it only fails again if the ledger loses what it recorded).
_RECORD_TRIES = 3


class RequestTimedOut(SingularityError):
    """No answer came in time; the message says on which queue, and who should have answered."""

    def __init__(self, request: Recorded, route: Route, waited_s: float) -> None:
        super().__init__(
            f"no answer to {request.queue} request {request.request_id} on {route.reply_to} "
            f"after {waited_s:g} s: is {route.answerer} running?{route.hint}"
        )
        self.request_id = request.request_id
        self.reply_to = route.reply_to


@dataclass(frozen=True, slots=True)
class Route:
    """Where the answers to one queue's requests come back, and who sends them."""

    reply_to: str
    answerer: str  # named in the error when no answer comes
    hint: str = ""  # said after the question, e.g. how to resume


@dataclass(frozen=True, slots=True)
class Recorded:
    """A request as its ledger keeps it."""

    request_id: str
    queue: str
    message: dict[str, Any]  # exactly what is (or was) sent
    sent: bool = False
    answer: dict[str, Any] | None = None
    # What the asker keeps beside the request and gets back on resuming; never sent.
    context: dict[str, Any] = field(default_factory=dict)
    deadline: datetime | None = None


@dataclass(frozen=True, slots=True)
class Draft:
    """A request not yet recorded: its message and the context kept beside it."""

    message: Mapping[str, Any]
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answered:
    """An answer, with the request it answers (and that request's context)."""

    request: Recorded
    answer: dict[str, Any]


class Ledger(Protocol):
    """Where a service records its requests and their answers (its own database)."""

    async def find(self, key: str) -> Recorded | None:
        """The request recorded under `key`, with its answer once it has one."""
        ...

    async def record(self, key: str | None, request: Recorded) -> bool:
        """Record a request before it is sent; False when `key` has a request already."""
        ...

    async def mark_sent(self, request_id: str) -> None: ...

    async def answer(self, request_id: str) -> dict[str, Any] | None:
        """The recorded answer of a request, or None while it has none."""
        ...

    async def record_answer(self, request_id: str, answer: BusMessage) -> dict[str, Any] | None:
        """Record an answer and return the one that counts (the first); None when no request
        with this id is recorded here."""
        ...


Send = Callable[[str, dict[str, Any]], Awaitable[int]]
Body = Mapping[str, Any] | Callable[[], Awaitable[Draft]]
T = TypeVar("T")


class Requester:
    """Asks on the bus through one ledger; `routes` says where each queue's answers come."""

    def __init__(
        self, send: Send, ledger: Ledger, routes: Mapping[str, Route], *, poll_s: float = 0.25
    ) -> None:
        self.ledger = ledger
        self.routes = dict(routes)
        self.poll_s = poll_s
        self._send = send
        self._turns: _PerKey[asyncio.Lock] = _PerKey(asyncio.Lock)
        self._waiters: _PerKey[asyncio.Future[dict[str, Any]]] = _PerKey(
            lambda: asyncio.get_running_loop().create_future()
        )

    async def ask(
        self, queue: str, body: Body, *, key: str | None = None, timeout_s: float
    ) -> dict[str, Any]:
        """The answer to a request on `queue` (see `request`)."""
        return (await self.request(queue, body, key=key, timeout_s=timeout_s)).answer

    async def request(
        self, queue: str, body: Body, *, key: str | None = None, timeout_s: float
    ) -> Answered:
        """Ask once per `key`: the recorded answer, else the answer waited for.

        `body` is the message, or an async function that drafts it, called only when `key`
        has no request yet. The requester adds `request_id` and `reply_to` when the message
        lacks them, and checks it against its queue's model (a malformed request is refused
        here, with the reason, not at the consumer). Raises RequestTimedOut after
        `timeout_s` without an answer: asked again under the same key, it goes on waiting.
        """
        with self._turns.use(key) as turn:
            async with turn:  # one caller of a key at a time records it and sends it
                request = await self._recorded(queue, body, key, timeout_s)
                if request.answer is None and not request.sent:
                    await self._publish(request, key)
        if request.answer is not None:
            return Answered(request, request.answer)
        with self._waiters.use(request.request_id) as waiter:
            answer = await self._wait(request, waiter, timeout_s)
        return Answered(request, answer)

    async def received(
        self, request_id: str, answer: BusMessage, *, queue: str | None = None
    ) -> dict[str, Any] | None:
        """Record an arrived answer and wake its waiters here: the answer that counts, or None
        (logged, and nothing else done) when no request with this id is recorded."""
        counted = await self.ledger.record_answer(request_id, answer)
        if counted is None:
            log.warning(
                "result_unmatched",
                queue=queue,
                request_id=request_id,
                reason="no request with this id was recorded here",
            )
            return None
        log.info("result_received", queue=queue, request_id=request_id)
        waiter = self._waiters.get(request_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(counted)
        return counted

    async def handle(self, delivery: Delivery[BusMessage]) -> None:
        """A consumer's handler for a reply queue (see `received`)."""
        await self.received(delivery.request_id, delivery.message, queue=delivery.queue)

    def route(self, queue: str) -> Route:
        route = self.routes.get(queue)
        if route is None:
            raise ValueError(f"no reply queue is known for requests on {queue!r}")
        return route

    async def _recorded(
        self, queue: str, body: Body, key: str | None, timeout_s: float
    ) -> Recorded:
        """The request under `key`, recorded now if it has none."""
        for _ in range(_RECORD_TRIES):
            if key is not None:
                found = await self.ledger.find(key)
                if found is not None:
                    return found
            request = await self._draft(queue, body, timeout_s)
            if await self.ledger.record(key, request):
                return request
        raise RuntimeError(f"the ledger neither records nor finds a request under {key!r}")

    async def _draft(self, queue: str, body: Body, timeout_s: float) -> Recorded:
        draft = await body() if callable(body) else Draft(body)
        message = {k: v for k, v in draft.message.items() if v is not None}
        message.setdefault("request_id", str(uuid.uuid4()))
        message.setdefault("reply_to", self.route(queue).reply_to)
        spec = queue_spec(queue)
        if spec is not None:
            checked = spec.message.model_validate(message)
            message = checked.model_dump(mode="json", exclude_none=True)
        deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)
        return Recorded(
            str(message["request_id"]),
            queue,
            message,
            context=dict(draft.context),
            deadline=deadline,
        )

    async def _publish(self, request: Recorded, key: str | None) -> None:
        await self._send(request.queue, request.message)
        await self.ledger.mark_sent(request.request_id)
        log.info("request_sent", queue=request.queue, request_id=request.request_id, key=key)

    async def _wait(
        self, request: Recorded, waiter: asyncio.Future[dict[str, Any]], timeout_s: float
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        pause = _FIRST_POLL_S
        while True:
            answer = await self.ledger.answer(request.request_id)
            if answer is not None:
                return answer
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RequestTimedOut(request, self.route(request.queue), timeout_s)
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(waiter), min(pause, remaining))
            pause = min(self.poll_s, pause * _POLL_GROWTH)


class _PerKey(Generic[T]):
    """One shared object per key while anyone uses it (a lock, a waiter), then forgotten."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._items: dict[str, tuple[T, int]] = {}

    @contextlib.contextmanager
    def use(self, key: str | None) -> Iterator[T]:
        if key is None:  # nothing to share: a request without a key is asked once
            yield self._make()
            return
        item, users = self._items.get(key) or (self._make(), 0)
        self._items[key] = (item, users + 1)
        try:
            yield item
        finally:
            item, users = self._items[key]
            if users == 1:
                del self._items[key]
            else:
                self._items[key] = (item, users - 1)

    def get(self, key: str) -> T | None:
        held = self._items.get(key)
        return held[0] if held is not None else None
