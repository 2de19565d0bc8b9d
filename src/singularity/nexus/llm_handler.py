"""The `llm_requests` consumer: route each request once, record it, answer its `reply_to`.

Exactly one effect: the answer is recorded in the nexus database before it is published, and a
request whose answer is recorded (a redelivery, or the same request_id sent twice) is answered
from the record without asking a provider again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import structlog
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from singularity.config import Settings
from singularity.nexus.router import ErrorCode, Routed, Router
from singularity.nexus.sql import QUERIES
from singularity.observability.metrics import observe_llm_call
from singularity.shared_queue import Delivery, LlmRequest, LlmResult, Reply, ReplyTargets
from singularity.shared_queue.messages import ErrorInfo, Usage
from singularity.shared_queue.publisher import encode

__all__ = ["DEFAULT_REPLY_TO", "LlmHandler"]

log = structlog.get_logger(__name__)

DEFAULT_REPLY_TO = "llm_results"


class LlmHandler:
    """Handles deliveries of `llm_requests` for one Nexus process."""

    def __init__(
        self,
        router: Router,
        pool: AsyncConnectionPool,
        targets: ReplyTargets,
        settings: Settings,
    ) -> None:
        self.router = router
        self._pool = pool
        self._targets = targets
        self._settings = settings
        self._in_flight: dict[str, asyncio.Future[Reply]] = {}

    async def __call__(self, delivery: Delivery[LlmRequest]) -> Reply:
        # Two deliveries of one request at once (a sender's retry in the same batch) share
        # one provider call: the second waits for the first's answer.
        key = delivery.request_id
        running = self._in_flight.get(key)
        if running is not None:
            log.info("llm_request_joined", request_id=key, msg_id=delivery.msg_id)
            return await asyncio.shield(running)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            reply = await self._handle(delivery)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: a future nobody joined must not warn
            raise
        else:
            future.set_result(reply)
            return reply
        finally:
            del self._in_flight[key]

    async def _handle(self, delivery: Delivery[LlmRequest]) -> Reply:
        started = time.perf_counter()
        request = delivery.message
        request_id = delivery.request_id
        reply_to = request.reply_to or DEFAULT_REPLY_TO
        await self._targets.require(reply_to)

        budget = self._budget_for(request.agent_id)
        recorded, spent, agent_spent = await self._lookup(request_id, request.agent_id, budget)
        if recorded is not None:
            log.info("llm_request_answered_again", request_id=request_id, msg_id=delivery.msg_id)
            return Reply(recorded[1], LlmResult.model_validate_json(recorded[0]))

        refusal = _over_budget(budget, spent, agent_spent, request.agent_id)
        if refusal is not None:
            routed = Routed(self.router.plan(request)[0])
            routed.error_code, routed.error_message = ErrorCode.BUDGET_EXCEEDED, refusal
        else:
            routed = await self.router.route(request)
        handling_ms = (time.perf_counter() - started) * 1000
        overhead_ms = max(0.0, handling_ms - routed.provider_ms - routed.waited_ms)
        result = _result(request_id, routed, overhead_ms)
        reply = await self._record(delivery, reply_to, routed, result, overhead_ms)
        _log_outcome(request_id, request, routed, overhead_ms)
        return Reply(reply_to, reply)

    async def on_invalid(self, body: Any, reason: str) -> Sequence[Reply]:
        """An unreadable request is dead-lettered; its asker still hears why, when it can."""
        return await self._targets.answer_invalid(
            body, DEFAULT_REPLY_TO, lambda rid: _invalid(rid, reason)
        )

    # -- budget ----------------------------------------------------------------------------

    def _budget_for(self, agent_id: str) -> tuple[float | None, float | None]:
        """(daily limit for all agents, daily limit for this agent)."""
        s = self._settings
        agent_limit = self.router.registry.agent_budgets.get(
            agent_id, s.nexus_agent_daily_budget_usd
        )
        return s.nexus_daily_budget_usd, agent_limit

    async def _lookup(
        self, request_id: str, agent_id: str, budget: tuple[float | None, float | None]
    ) -> tuple[tuple[str, str] | None, float, float]:
        params = {
            "request_id": request_id,
            "agent_id": agent_id,
            "with_spend": budget != (None, None),
        }
        async with self._pool.connection() as conn:
            row = await (await conn.execute(QUERIES["llm_lookup"], params)).fetchone()
        assert row is not None
        recorded = (row[0], row[1]) if row[0] is not None else None
        return recorded, float(row[2]), float(row[3])

    # -- record ----------------------------------------------------------------------------

    async def _record(
        self,
        delivery: Delivery[LlmRequest],
        reply_to: str,
        routed: Routed,
        result: LlmResult,
        overhead_ms: float,
    ) -> LlmResult:
        """Record the request with its answer; returns the answer to publish (the first one
        recorded, if a duplicate of this request got there first)."""
        request = delivery.message
        completion = routed.completion
        params = {
            "request_id": delivery.request_id,
            "msg_id": delivery.msg_id,
            "agent_id": request.agent_id,
            "task_type": request.task_type,
            "tier": routed.tier.tier.value,
            "tier_reason": routed.tier.reason,
            "outcome": "ok" if routed.ok else routed.error_code,
            "model": routed.deployment.name if routed.deployment else None,
            "attempts": Jsonb([a.as_dict() for a in routed.attempts]),
            "prompt_tokens": completion.prompt_tokens if completion else None,
            "completion_tokens": completion.completion_tokens if completion else None,
            "cost_usd": routed.cost_usd,
            "provider_ms": round(routed.provider_ms, 3),
            "overhead_ms": round(overhead_ms, 3),
            "reply_to": reply_to,
            "reply": Jsonb(result, dumps=encode),  # encoded as the bus gets it
            "received_at": delivery.enqueued_at,
        }
        async with self._pool.connection() as conn:
            if await (await conn.execute(QUERIES["llm_record"], params)).fetchone():
                observe_llm_call(
                    params["model"],
                    params["prompt_tokens"],
                    params["completion_tokens"],
                    routed.cost_usd,
                )
                return result
            stored = await (await conn.execute(QUERIES["llm_reply"], params)).fetchone()
        assert stored is not None
        return LlmResult.model_validate_json(stored[0])


def _invalid(request_id: str, reason: str) -> LlmResult:
    # A request id no result may carry (too long) fails here: the consumer then sends none.
    return LlmResult(
        request_id=request_id, error=ErrorInfo(code=ErrorCode.VALIDATION_ERROR, message=reason)
    )


def _result(request_id: str, routed: Routed, overhead_ms: float) -> LlmResult:
    """The `llm_results` message: the answer with its tool calls, usage and cost, or the error.

    What routing did (tier, attempts, timings) travels as extra fields of the result.
    """
    routing: dict[str, Any] = {"tier": routed.tier.tier.value}
    attempts = [a.as_dict() for a in routed.attempts]
    if not routed.ok:
        if attempts:
            routing["attempts"] = attempts
        error = ErrorInfo(
            code=routed.error_code or ErrorCode.PROVIDER_ERROR,
            message=routed.error_message or "",
        )
        return LlmResult(request_id=request_id, error=error, **routing)
    completion = routed.completion
    deployment = routed.deployment
    assert completion is not None and deployment is not None
    routing.update(overhead_ms=round(overhead_ms, 3), provider_ms=round(routed.provider_ms, 3))
    if len(attempts) > 1:
        routing["attempts"] = attempts
    cost = routed.cost_usd
    return LlmResult(
        request_id=request_id,
        result=completion.text,
        model=deployment.name,
        tool_calls=list(completion.tool_calls) or None,
        finish_reason=completion.finish_reason,
        usage=Usage(
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        ),
        cost_usd=round(cost, 8) if cost is not None else None,
        cost_unknown=True if cost is None else None,  # unknown, said so, never a silent 0
        **routing,
    )


def _over_budget(
    budget: tuple[float | None, float | None], spent: float, agent_spent: float, agent_id: str
) -> str | None:
    daily, agent_daily = budget
    if daily is not None and spent >= daily:
        return f"today's budget of ${daily:.2f} for all agents is spent (${spent:.4f})"
    if agent_daily is not None and agent_spent >= agent_daily:
        return (
            f"agent {agent_id!r} has spent its budget of ${agent_daily:.2f} for today "
            f"(${agent_spent:.4f})"
        )
    return None


def _log_outcome(request_id: str, request: LlmRequest, routed: Routed, overhead_ms: float) -> None:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "agent_id": request.agent_id,
        "task_type": request.task_type,
        "tier": routed.tier.tier.value,
        "attempts": len(routed.attempts),
        "overhead_ms": round(overhead_ms, 2),
    }
    if routed.ok:
        assert routed.completion is not None and routed.deployment is not None
        log.info(
            "llm_request_routed",
            model=routed.deployment.name,
            tokens=routed.completion.prompt_tokens + routed.completion.completion_tokens,
            cost_usd=routed.cost_usd,
            provider_ms=round(routed.provider_ms, 1),
            **fields,
        )
    else:
        log.warning(
            "llm_request_failed", code=routed.error_code, reason=routed.error_message, **fields
        )
