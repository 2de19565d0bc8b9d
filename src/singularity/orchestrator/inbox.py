"""The answers coming back to one Singularity instance, on its five reply queues.

Every answer is recorded against its pending request (the first one counts); the waiting call,
in this process or another, then returns it. An answer to a request this instance never
recorded is logged and archived: there is no one to give it to.
"""

from __future__ import annotations

from typing import Any

import structlog

from singularity.orchestrator.client import PlatformClient
from singularity.orchestrator.flows import FLOWS, Flow
from singularity.orchestrator.store import SingularityStore
from singularity.shared_queue import Bus, BusMessage, Consumer, Delivery, LlmResult

__all__ = ["inbox_consumers"]

log = structlog.get_logger(__name__)


def inbox_consumers(bus: Bus, store: SingularityStore, client: PlatformClient) -> list[Consumer]:
    """One consumer per reply queue of the client's instance."""
    consumers: list[Consumer] = []
    for flow in FLOWS.values():
        handler = _Recorder(flow, store, client)
        consumers.append(bus.consumer(flow.reply_to(client.instance), flow.result, handler))
    return consumers


class _Recorder:
    def __init__(self, flow: Flow, store: SingularityStore, client: PlatformClient) -> None:
        self.flow = flow
        self.store = store
        self.client = client

    async def __call__(self, delivery: Delivery[BusMessage]) -> None:
        result = delivery.message.model_dump(mode="json")
        llm_call = _llm_call(delivery.message) if isinstance(delivery.message, LlmResult) else None
        outcome = await self.store.record_answer(delivery.request_id, result, llm_call=llm_call)
        if outcome == "unknown":
            log.warning(
                "result_unmatched",
                queue=delivery.queue,
                request_id=delivery.request_id,
                reason="no request with this id was recorded by this instance",
            )
            return
        log.info("result_received", kind=self.flow.kind, request_id=delivery.request_id)
        self.client.resolve(delivery.request_id, result)


def _llm_call(result: LlmResult) -> dict[str, Any]:
    extra = result.model_extra or {}
    usage = result.usage
    tier = extra.get("tier")  # a field the model keeps unchecked: any JSON value
    return {
        "model": result.model,
        "tier": tier if isinstance(tier, str) else None,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "cost_usd": result.cost_usd,
        "error": f"{result.error.code}: {result.error.message}" if result.error else None,
    }
