"""One call to one model through LiteLLM, with its failure sorted into what the router needs.

LiteLLM is imported on first use: it takes seconds to import, which a command that never calls
a model (`singularity nexus models`) should not pay.
"""

from __future__ import annotations

import email.utils
import functools
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import ModuleType
from typing import Any

import structlog

from singularity.nexus import tool_text
from singularity.nexus.providers import Deployment
from singularity.nexus.tool_calls import ToolSet, native_answer
from singularity.shared_queue.messages import ToolCall

__all__ = [
    "CallFailed",
    "Completion",
    "Failure",
    "call_model",
    "load_litellm",
    "takes_tools",
    "tool_mode",
]

log = structlog.get_logger(__name__)

# Parameters a request may pass through to the model; anything else it carries is ignored
# (besides its typed `tools`, `tool_choice` and `response_format`).
PASS_THROUGH = ("temperature", "max_tokens", "top_p", "stop", "seed")

_litellm: ModuleType | None = None


def load_litellm() -> ModuleType:
    """LiteLLM, configured for a service: its bundled price list (no fetch at import), quiet."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        # A provider that lacks a parameter ignores it. Never tools: a model whose provider
        # cannot take them is asked through the text protocol instead (see `tool_mode`).
        litellm.drop_params = True
        _litellm = litellm
    return _litellm


class Failure(StrEnum):
    RATE_LIMITED = "rate_limited"
    CONTEXT_WINDOW = "context_window"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"  # 5xx, connection refused: the deployment's fault
    REJECTED = "rejected"  # 4xx other than the above: auth, bad request, unknown model


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    provider_ms: float
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None


class CallFailed(Exception):
    """A call that did not produce an answer, with what kind of failure it was."""

    def __init__(
        self, kind: Failure, message: str, *, retry_after_s: float | None, provider_ms: float
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s
        self.provider_ms = provider_ms


async def call_model(
    deployment: Deployment,
    messages: Sequence[Mapping[str, Any]],
    *,
    timeout_s: float,
    params: Mapping[str, Any] | None = None,
    tools: ToolSet | None = None,
) -> Completion:
    """Ask one deployment once (no retries of LiteLLM's or the SDK's own)."""
    litellm = load_litellm()
    as_text = tool_mode(deployment, messages, tools) == "text"
    sent = dict(params or {})
    if as_text:
        messages = tool_text.render_messages(messages, tools)
    elif tools is not None:
        sent.update(tools.as_params())
    started = time.perf_counter()
    try:
        response = await litellm.acompletion(
            model=deployment.litellm_model,
            messages=list(messages),
            api_key=deployment.api_key,
            api_base=deployment.api_base,
            timeout=timeout_s,
            max_retries=0,
            num_retries=0,
            **sent,
        )
    except Exception as exc:
        elapsed = (time.perf_counter() - started) * 1000
        kind = classify(exc)
        raise CallFailed(
            kind, _message(exc), retry_after_s=retry_after(exc), provider_ms=elapsed
        ) from exc
    elapsed = (time.perf_counter() - started) * 1000
    choice = response.choices[0]
    finish_reason = getattr(choice, "finish_reason", None)
    if as_text:
        content = getattr(choice.message, "content", None)
        answer = tool_text.parse_answer(
            content if isinstance(content, str) else "", tools, finish_reason
        )
    else:
        answer = native_answer(choice.message, finish_reason, tools)
    usage = getattr(response, "usage", None)
    return Completion(
        text=answer.text,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        provider_ms=elapsed,
        tool_calls=answer.tool_calls,
        finish_reason=answer.finish_reason,
    )


def tool_mode(
    deployment: Deployment, messages: Sequence[Mapping[str, Any]], tools: ToolSet | None
) -> str | None:
    """How the call carries tools: "native", "text", or None when it has nothing of tools."""
    if not tool_text.uses_tools(messages, tools):
        return None
    if deployment.tool_calling == "text":
        return "text"
    forced = tools is not None and tools.choice not in (None, "auto")
    if tools is not None and not takes_tools(deployment.litellm_model, forced=forced):
        # LiteLLM would drop what the provider lacks without a word: ask in text instead.
        log.info("tools_as_text", model=deployment.name, litellm_model=deployment.litellm_model)
        return "text"
    return "native"


@functools.lru_cache(maxsize=256)
def takes_tools(litellm_model: str, *, forced: bool = False) -> bool:
    """Whether LiteLLM passes `tools` to this model (and `tool_choice`, when one is forced)."""
    litellm = load_litellm()
    try:
        model, provider, _, _ = litellm.get_llm_provider(litellm_model)
        supported = litellm.get_supported_openai_params(model=model, custom_llm_provider=provider)
    except Exception:  # a provider LiteLLM does not know: the call itself will say so
        return True
    if not supported or "tools" not in supported:
        return False
    return not forced or "tool_choice" in supported


def classify(exc: BaseException) -> Failure:
    """Which kind of failure an exception from LiteLLM is."""
    litellm = load_litellm()
    if isinstance(exc, litellm.ContextWindowExceededError):
        return Failure.CONTEXT_WINDOW
    if isinstance(exc, litellm.RateLimitError):
        return Failure.RATE_LIMITED
    if isinstance(exc, litellm.Timeout | TimeoutError):
        return Failure.TIMEOUT
    status = getattr(exc, "status_code", None)
    if isinstance(exc, litellm.APIConnectionError) or status is None or status >= 500:
        return Failure.UNAVAILABLE
    if status == 408:
        return Failure.TIMEOUT
    if status == 429:
        return Failure.RATE_LIMITED
    return Failure.REJECTED


def retry_after(exc: BaseException) -> float | None:
    """The wait a rate-limited provider asked for (Retry-After or retry-after-ms), if any."""
    headers = _headers(exc)
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def _headers(exc: BaseException) -> Mapping[str, str] | None:
    for candidate in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "headers", None),
    ):
        if candidate:
            return {str(k).lower(): str(v) for k, v in dict(candidate).items()}
    return None


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    for prefix in ("litellm.", "OpenAIException - "):
        text = text.replace(prefix, "")
    return text.splitlines()[0][:500]
