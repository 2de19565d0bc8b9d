"""The requester's ledger of a Singularity instance: its requests and their answers in the
singularity database (`pending_requests`), a model call's cost in `llm_calls`."""

from __future__ import annotations

from typing import Any

from singularity.orchestrator.flows import FLOWS
from singularity.orchestrator.store import SingularityStore
from singularity.shared_queue import BusMessage, LlmResult, Recorded

__all__ = ["TaskLedger", "task_key"]

_KINDS = {flow.requests: flow.kind for flow in FLOWS.values()}


def task_key(task_id: int, step: str) -> str:
    """The key of a task's step: asked again, it is the same request."""
    return f"{task_id}:{step}"


def _task_step(key: str) -> tuple[int, str]:
    task_id, _, step = key.partition(":")
    if not task_id.isdigit() or not step:
        raise ValueError(f"{key!r} is not a task's step (task_key makes one)")
    return int(task_id), step


class TaskLedger:
    """Requests keyed by a task's step (`task_key`), or by nothing."""

    def __init__(self, store: SingularityStore) -> None:
        self.store = store

    async def find(self, key: str) -> Recorded | None:
        found = await self.store.step_request(*_task_step(key))
        if found is None:
            return None
        answered = found.answered_at is not None and found.result is not None
        return Recorded(
            found.request_id,
            found.queue,
            found.body,
            sent=found.sent_at is not None,
            answer=found.result if answered else None,
        )

    async def record(self, key: str | None, request: Recorded) -> bool:
        task_id, step = _task_step(key) if key is not None else (None, None)
        return await self.store.record_request(
            request_id=request.request_id,
            task_id=task_id,
            step=step,
            kind=_KINDS[request.queue],
            queue=request.queue,
            reply_to=request.message["reply_to"],
            body=request.message,
            deadline=request.deadline,
        )

    async def mark_sent(self, request_id: str) -> None:
        await self.store.mark_sent(request_id)

    async def answer(self, request_id: str) -> dict[str, Any] | None:
        return await self.store.answer(request_id)

    async def record_answer(self, request_id: str, answer: BusMessage) -> dict[str, Any] | None:
        result = answer.model_dump(mode="json")
        llm_call = _llm_call(answer) if isinstance(answer, LlmResult) else None
        outcome = await self.store.record_answer(request_id, result, llm_call=llm_call)
        if outcome == "unknown":
            return None
        return result if outcome == "recorded" else await self.store.answer(request_id)


def _llm_call(result: LlmResult) -> dict[str, Any]:
    usage = result.usage
    # Declared, or kept unchecked as an extra field (then any JSON value): text only.
    tier = getattr(result, "tier", None)
    return {
        "model": result.model,
        "tier": tier if isinstance(tier, str) else None,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "cost_usd": result.cost_usd,
        "error": f"{result.error.code}: {result.error.message}" if result.error else None,
    }
