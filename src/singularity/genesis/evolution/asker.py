"""Model calls of an evolution run: asked of Nexus on `llm_requests`, answered on
`genesis_llm_results`.

Each call goes through the bus's one durable requester (`singularity.shared_queue.Requester`):
it is recorded in the genesis database under its run and step before it is sent, and its
answer is recorded by whichever evolution process consumes it (the first answer counts). A
step asked again, after a crash say, finds its request: it gets the answer that arrived
meanwhile, or waits for it, and never pays twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from singularity.errors import SingularityError
from singularity.genesis.evolution.ledger import EvolutionLedger
from singularity.genesis.store import GenesisStore
from singularity.shared_queue import (
    Bus,
    Consumer,
    Draft,
    LlmResult,
    Publisher,
    Requester,
    RequestTimedOut,
    Route,
)

__all__ = ["LLM_REPLY_QUEUE", "Asked", "LlmAsker", "ModelCallFailed", "NoAnswer"]

LLM_REPLY_QUEUE = "genesis_llm_results"
_REQUESTS = "llm_requests"
_NEXUS = Route(
    LLM_REPLY_QUEUE,
    "Nexus (`singularity up` or `singularity run nexus`)",
    hint=" Run the command again to resume.",
)

# Nexus did not answer in time (the requester's error, under the name callers know here).
NoAnswer = RequestTimedOut


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
        ledger = EvolutionLedger(store, run_id)
        self.requester = Requester(publisher.send, ledger, {_REQUESTS: _NEXUS})

    def consumer(self, bus: Bus) -> Consumer[LlmResult]:
        """The consumer of the answers (to run while the run asks)."""
        return bus.consumer(LLM_REPLY_QUEUE, LlmResult, self.requester.handle)

    async def ask(self, step: str, build: Build) -> Asked:
        """The answer to the step's request; raises ModelCallFailed or NoAnswer."""

        async def draft() -> Draft:
            body, context = await build()
            return Draft(body, context)

        answered = await self.requester.request(
            _REQUESTS, draft, key=step, timeout_s=self.timeout_s
        )
        result = LlmResult.model_validate(answered.answer)
        if result.error is not None:
            raise ModelCallFailed(result.error.code, result.error.message)
        return Asked(result, answered.request.context)

    async def spend_usd(self) -> float:
        return await self.store.evolution_spend(self.run_id)
