"""Model calls of an evolution run: asked of Nexus on `llm_requests`, answered on
`genesis_llm_results`.

Each call is recorded in the genesis database under its run and step before it is sent, and
its answer is recorded by whichever evolution process consumes it (the first answer counts).
A step asked again, after a crash say, finds its request: it gets the answer that arrived
meanwhile, or waits for it, and never pays twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from singularity.errors import SingularityError
from singularity.genesis.store import EvolutionRequest, GenesisStore
from singularity.shared_queue import Bus, Consumer, Delivery, LlmRequest, LlmResult, Publisher

__all__ = ["LLM_REPLY_QUEUE", "Asked", "LlmAsker", "ModelCallFailed", "NoAnswer"]

log = structlog.get_logger(__name__)

LLM_REPLY_QUEUE = "genesis_llm_results"
_REQUESTS = "llm_requests"
# How often a waiting call looks for an answer recorded by another process (an answer
# consumed by this process wakes it at once).
_POLL_S = 0.25


class NoAnswer(SingularityError):
    """Nexus did not answer in time."""


class ModelCallFailed(SingularityError):
    """Nexus answered with an error instead of a completion."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"the model call failed: {code}: {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Asked:
    """A step's answer, with the context recorded when it was asked (the parent, say)."""

    result: LlmResult
    context: dict[str, Any]


# What a step asks, built only when the step has not asked yet: (request body, context).
Build = Callable[[], Awaitable[tuple[dict[str, Any], dict[str, Any]]]]


class LlmAsker:
    """One evolution run's model calls, over the bus."""

    def __init__(
        self,
        store: GenesisStore,
        publisher: Publisher,
        run_id: str,
        *,
        timeout_s: float,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.run_id = run_id
        self.timeout_s = timeout_s
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}

    def consumer(self, bus: Bus) -> Consumer[LlmResult]:
        """The consumer of the answers (to run while the run asks)."""
        return bus.consumer(LLM_REPLY_QUEUE, LlmResult, self._received)

    async def ask(self, step: str, build: Build) -> Asked:
        """The answer to the step's request; raises ModelCallFailed or NoAnswer."""
        recorded = await self.store.evolution_request(self.run_id, step)
        if recorded is None:
            body, context = await build()
            request_id = str(uuid.uuid4())
            body = {**body, "request_id": request_id, "reply_to": LLM_REPLY_QUEUE}
            # A malformed request is refused here, with the reason, not at the consumer.
            body = LlmRequest.model_validate(body).model_dump(mode="json", exclude_none=True)
            stored = await self.store.record_evolution_request(
                request_id=request_id, run_id=self.run_id, step=step, body=body, context=context
            )
            if not stored:  # another process of this run recorded the step first
                return await self.ask(step, build)
            recorded = EvolutionRequest(request_id, body, context, sent=False, result=None)
        raw = recorded.result
        if raw is None:
            raw = await self._send_and_wait(recorded.request_id, recorded.body, recorded.sent)
        result = LlmResult.model_validate(raw)
        if result.error is not None:
            raise ModelCallFailed(result.error.code, result.error.message)
        return Asked(result, recorded.context)

    async def spend_usd(self) -> float:
        return await self.store.evolution_spend(self.run_id)

    async def _send_and_wait(
        self, request_id: str, body: dict[str, Any], sent: bool
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        waiter = self._waiters.setdefault(request_id, loop.create_future())
        try:
            if not sent:
                await self.publisher.send(_REQUESTS, body)
                await self.store.mark_evolution_request_sent(request_id)
                log.info("evolution_llm_request_sent", request_id=request_id, run=self.run_id)
            deadline = loop.time() + self.timeout_s
            while True:
                answer = await self.store.evolution_answer(request_id)
                if answer is not None:
                    return answer
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise NoAnswer(
                        f"no answer from Nexus on {LLM_REPLY_QUEUE} in {self.timeout_s:g} s; "
                        "is Nexus running (`singularity up` or `singularity run nexus`)? "
                        "Run the command again to resume"
                    )
                try:
                    return await asyncio.wait_for(
                        asyncio.shield(waiter), timeout=min(_POLL_S, remaining)
                    )
                except TimeoutError:
                    continue
        finally:
            self._waiters.pop(request_id, None)

    async def _received(self, delivery: Delivery[LlmResult]) -> None:
        result = delivery.message.model_dump(mode="json")
        recorded = await self.store.record_evolution_answer(
            delivery.request_id, result, delivery.message.cost_usd
        )
        if recorded is None:
            log.warning(
                "result_unmatched",
                queue=delivery.queue,
                request_id=delivery.request_id,
                reason="no evolution run recorded a request with this id",
            )
            return
        waiter = self._waiters.get(delivery.request_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(recorded)
