"""Routing one LLM request: pick the tier, walk the candidates, survive their failures.

- a failed call falls through to the next candidate;
- a rate limit is retried on the same model after the wait the provider asked for (or a
  backoff), a bounded number of times, then falls through;
- a model that keeps failing cools down and is tried last until it has rested;
- a context-window error moves on to a model with a larger window;
- the whole request has a deadline; each call gets what is left, at most the attempt timeout.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from singularity.config import Settings
from singularity.nexus.complexity import TierChoice, choose_tier
from singularity.nexus.cooldown import Cooldowns
from singularity.nexus.llm_client import (
    PASS_THROUGH,
    CallFailed,
    Completion,
    Failure,
    call_model,
)
from singularity.nexus.prices import call_cost
from singularity.nexus.providers import PROVIDER_SETTINGS, Deployment, Providers
from singularity.nexus.registry import Registry
from singularity.nexus.tool_calls import ToolSet
from singularity.shared_queue.messages import LlmRequest

__all__ = ["Attempt", "ErrorCode", "Routed", "Router"]

log = structlog.get_logger(__name__)

# A call cut off by the deadline may return a hair before it; this close counts as passed.
_SLACK_S = 0.01


class ErrorCode:
    VALIDATION_ERROR = "VALIDATION_ERROR"
    NO_PROVIDER = "NO_PROVIDER"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    TIMEOUT = "TIMEOUT"
    RATE_LIMITED = "RATE_LIMITED"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"


@dataclass(slots=True)
class Attempt:
    """One call (or one skipped candidate) on the way to an answer."""

    model: str
    outcome: str  # "ok", a Failure, or "skipped"
    ms: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model": self.model,
            "outcome": self.outcome,
            "ms": round(self.ms, 2),
        }
        if self.error:
            data["error"] = self.error
        return data


@dataclass(slots=True)
class Routed:
    """What routing produced: an answer from one model, or an error code."""

    tier: TierChoice
    attempts: list[Attempt] = field(default_factory=list)
    deployment: Deployment | None = None
    completion: Completion | None = None
    cost_usd: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    provider_ms: float = 0.0  # time inside provider calls
    waited_ms: float = 0.0  # time waiting out rate limits, as the provider asked

    @property
    def ok(self) -> bool:
        return self.completion is not None


class Router:
    """Routes requests with one registry, one set of credentials and one cooldown memory."""

    def __init__(
        self,
        registry: Registry,
        providers: Providers,
        settings: Settings,
        cooldowns: Cooldowns | None = None,
    ) -> None:
        self.registry = registry
        self.providers = providers
        self.settings = settings
        self.cooldowns = cooldowns or Cooldowns(
            settings.nexus_cooldown_failures, settings.nexus_cooldown_s
        )

    def plan(self, request: LlmRequest) -> tuple[TierChoice, list[Deployment]]:
        """The tier and the callable candidates in the order they will be tried."""
        tier = choose_tier(request.task_type, request.messages, request.complexity)
        deployments = [
            d
            for d in (
                self.providers.deployment(s)
                for s in self.registry.candidates(request.task_type, tier.tier)
            )
            if d is not None
        ]
        # A model cooling down goes last: tried only when every rested one has failed.
        deployments.sort(key=lambda d: self.cooldowns.cooling(d.name))
        return tier, deployments

    async def route(self, request: LlmRequest) -> Routed:
        tier, queue = self.plan(request)
        routed = Routed(tier)
        if not queue:
            routed.error_code = ErrorCode.NO_PROVIDER
            routed.error_message = self._no_provider_message(request, tier)
            return routed
        deadline = time.monotonic() + self._timeout_s(request)
        messages = [m.model_dump(exclude_none=True) for m in request.messages]
        extra = request.model_extra or {}
        params = {k: extra[k] for k in PASS_THROUGH if k in extra}
        if request.response_format is not None:
            params["response_format"] = request.response_format
        tools = ToolSet.of(request)
        tried: set[str] = set()
        last: CallFailed | None = None
        while queue:
            deployment = queue.pop(0)
            if deployment.name in tried:
                continue
            tried.add(deployment.name)
            failure = await self._try(deployment, messages, params, tools, deadline, routed)
            if failure is None:
                routed.deployment = deployment
                routed.cost_usd = self._cost(deployment, routed.completion)
                return routed
            last = failure
            if failure.kind is Failure.CONTEXT_WINDOW:
                queue = self._larger(deployment, queue, tried)
            if time.monotonic() >= deadline:
                break
        self._fail(routed, last, deadline)
        return routed

    async def _try(
        self,
        deployment: Deployment,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        tools: ToolSet | None,
        deadline: float,
        routed: Routed,
    ) -> CallFailed | None:
        """Call one deployment, retrying rate limits; None on success, else the last failure."""
        retries = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return CallFailed(
                    Failure.TIMEOUT,
                    "the request's deadline passed",
                    retry_after_s=None,
                    provider_ms=0.0,
                )
            timeout = min(remaining, self.settings.nexus_attempt_timeout_s)
            try:
                completion = await call_model(
                    deployment, messages, timeout_s=timeout, params=params, tools=tools
                )
            except CallFailed as failure:
                routed.provider_ms += failure.provider_ms
                routed.attempts.append(
                    Attempt(deployment.name, failure.kind.value, failure.provider_ms, str(failure))
                )
                wait = self._rate_limit_wait(failure, retries, deadline)
                if wait is not None:
                    retries += 1
                    log.info(
                        "rate_limited_retry",
                        model=deployment.name,
                        wait_s=round(wait, 3),
                        retry=retries,
                    )
                    await asyncio.sleep(wait)
                    routed.waited_ms += wait * 1000
                    continue
                if failure.kind is not Failure.CONTEXT_WINDOW:
                    self._count_failure(deployment, failure)
                return failure
            routed.provider_ms += completion.provider_ms
            routed.attempts.append(Attempt(deployment.name, "ok", completion.provider_ms))
            routed.completion = completion
            self.cooldowns.succeeded(deployment.name)
            return None

    def _rate_limit_wait(self, failure: CallFailed, retries: int, deadline: float) -> float | None:
        """How long to wait before asking the same model again, or None to move on."""
        if (
            failure.kind is not Failure.RATE_LIMITED
            or retries >= self.settings.nexus_rate_limit_retries
        ):
            return None
        if failure.retry_after_s is not None:
            wait = failure.retry_after_s
        else:
            wait = min(8.0, 0.5 * 2**retries) * random.uniform(0.8, 1.2)
        if wait > self.settings.nexus_rate_limit_max_wait_s:
            return None
        if time.monotonic() + wait >= deadline:
            return None
        return wait

    def _count_failure(self, deployment: Deployment, failure: CallFailed) -> None:
        if self.cooldowns.failed(deployment.name):
            log.warning(
                "model_cooling_down",
                model=deployment.name,
                seconds=self.cooldowns.seconds,
                last_error=str(failure),
            )

    def _larger(
        self, too_small: Deployment, queue: list[Deployment], tried: set[str]
    ) -> list[Deployment]:
        """The candidates left that can hold more; failing those, any larger model we can call."""
        window = too_small.spec.context_window
        larger = [d for d in queue if d.spec.context_window > window]
        if larger:
            return larger
        found = (self.providers.deployment(m) for m in self.registry.larger_than(window))
        return [d for d in found if d is not None and d.name not in tried]

    def _cost(self, deployment: Deployment, completion: Completion | None) -> float | None:
        if completion is None:
            return None
        return call_cost(deployment, completion.prompt_tokens, completion.completion_tokens)

    def _timeout_s(self, request: LlmRequest) -> float:
        limit = self.settings.nexus_request_timeout_s
        asked = (request.model_extra or {}).get("timeout_s")
        if isinstance(asked, int | float) and not isinstance(asked, bool) and asked > 0:
            return min(float(asked), limit)
        return limit

    def _fail(self, routed: Routed, last: CallFailed | None, deadline: float) -> None:
        failures = [a for a in routed.attempts if a.outcome != "ok"]
        tried = ", ".join(dict.fromkeys(a.model for a in failures)) or "none"
        timed_out = failures and all(a.outcome == Failure.TIMEOUT for a in failures)
        if time.monotonic() >= deadline - _SLACK_S or timed_out:
            routed.error_code = ErrorCode.TIMEOUT
            routed.error_message = f"no answer within the request's time limit (tried {tried})"
        elif failures and all(a.outcome == Failure.RATE_LIMITED for a in failures):
            routed.error_code = ErrorCode.RATE_LIMITED
            routed.error_message = f"every candidate is rate limited (tried {tried})"
        elif last is not None and last.kind is Failure.CONTEXT_WINDOW:
            routed.error_code = ErrorCode.PROVIDER_ERROR
            routed.error_message = (
                f"the conversation is too long for every model that can be called (tried {tried})"
            )
        else:
            routed.error_code = ErrorCode.PROVIDER_ERROR
            detail = f": {last}" if last is not None else ""
            routed.error_message = f"every candidate failed (tried {tried}); last error{detail}"

    def _no_provider_message(self, request: LlmRequest, tier: TierChoice) -> str:
        hints: dict[str, str] = {}
        for spec in self.registry.candidates(request.task_type, tier.tier):
            needed = spec.api_key_env or PROVIDER_SETTINGS.get(spec.provider, "credentials")
            hints.setdefault(spec.provider, needed)
        listed = "; ".join(f"{provider}: {needed}" for provider, needed in sorted(hints.items()))
        return (
            f"no model for task type {request.task_type!r} ({tier.tier} tier) has credentials; "
            f"configure one of: {listed or 'a model in the registry for this tier'}"
        )
