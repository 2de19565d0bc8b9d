"""The requester's ledger of an evolution run: its model calls and their answers in the
genesis database (`evolution_llm_requests`), each under the step that asked it."""

from __future__ import annotations

from typing import Any

from singularity.genesis.store import GenesisStore
from singularity.shared_queue import BusMessage, LlmResult, Recorded

__all__ = ["EvolutionLedger"]

_REQUESTS = "llm_requests"


class EvolutionLedger:
    """One run's requests, keyed by step; answers are recorded whichever run they belong to
    (any evolution process may consume them)."""

    def __init__(self, store: GenesisStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    async def find(self, key: str) -> Recorded | None:
        found = await self.store.evolution_request(self.run_id, key)
        if found is None:
            return None
        return Recorded(
            found.request_id,
            _REQUESTS,
            found.body,
            sent=found.sent,
            answer=found.result,
            context=found.context,
        )

    async def record(self, key: str | None, request: Recorded) -> bool:
        if key is None:
            raise ValueError("an evolution run's model call is asked for one of its steps")
        if request.queue != _REQUESTS:
            raise ValueError(f"an evolution run asks on {_REQUESTS}, not {request.queue}")
        return await self.store.record_evolution_request(
            request_id=request.request_id,
            run_id=self.run_id,
            step=key,
            body=request.message,
            context=request.context,
        )

    async def mark_sent(self, request_id: str) -> None:
        await self.store.mark_evolution_request_sent(request_id)

    async def answer(self, request_id: str) -> dict[str, Any] | None:
        return await self.store.evolution_answer(request_id)

    async def record_answer(self, request_id: str, answer: BusMessage) -> dict[str, Any] | None:
        cost_usd = answer.cost_usd if isinstance(answer, LlmResult) else None
        return await self.store.record_evolution_answer(
            request_id, answer.model_dump(mode="json"), cost_usd
        )
