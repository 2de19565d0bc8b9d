"""The router against a local server that speaks the OpenAI protocol: answers, fallbacks,
rate limits, timeouts, context windows, cooldowns."""

from __future__ import annotations

import time

import pytest

from singularity.config import Settings
from singularity.nexus.providers import Providers
from singularity.nexus.registry import load_registry
from singularity.nexus.router import ErrorCode, Router
from singularity.shared_queue import LlmRequest
from singularity.testing.openai_server import (
    ContextTooLong,
    Hang,
    MockOpenAI,
    RateLimited,
    Reply,
    ServerError,
)


def request(task_type: str = "classifier", text: str = "hello", **extra: object) -> LlmRequest:
    return LlmRequest(
        agent_id="agent-1",
        task_type=task_type,
        messages=[{"role": "user", "content": text}],  # type: ignore[list-item]
        **extra,
    )


def models_called(llm: MockOpenAI) -> list[str]:
    return [call.model for call in llm.calls]


async def test_the_first_candidate_answers_with_usage_and_cost(
    router: Router, llm: MockOpenAI
) -> None:
    llm.script("alpha", Reply("four", prompt_tokens=1000, completion_tokens=500))
    routed = await router.route(request())
    assert routed.ok and routed.completion is not None and routed.deployment is not None
    assert (routed.deployment.name, routed.completion.text) == ("alpha", "four")
    assert (routed.completion.prompt_tokens, routed.completion.completion_tokens) == (1000, 500)
    # 1000 tokens at $1/M in + 500 at $2/M out
    assert routed.cost_usd == pytest.approx(0.002)
    assert [a.outcome for a in routed.attempts] == ["ok"]
    assert routed.tier.tier == "simple"


async def test_a_server_error_falls_through_to_the_next_candidate(
    router: Router, llm: MockOpenAI
) -> None:
    llm.script("alpha", ServerError(500))
    routed = await router.route(request())
    assert routed.ok and routed.deployment is not None and routed.deployment.name == "beta"
    assert models_called(llm) == ["alpha", "beta"]
    assert [(a.model, a.outcome) for a in routed.attempts] == [
        ("alpha", "unavailable"),
        ("beta", "ok"),
    ]


async def test_a_rate_limit_is_retried_after_the_wait_the_provider_asked_for(
    router: Router, llm: MockOpenAI
) -> None:
    llm.script("alpha", RateLimited(retry_after_s=0.4))
    started = time.monotonic()
    routed = await router.route(request())
    assert routed.ok and routed.deployment is not None and routed.deployment.name == "alpha"
    assert models_called(llm) == ["alpha", "alpha"]
    calls = llm.calls_for("alpha")
    assert calls[1].at - calls[0].at >= 0.4
    assert time.monotonic() - started >= 0.4
    assert routed.waited_ms >= 400
    assert [a.outcome for a in routed.attempts] == ["rate_limited", "ok"]


async def test_a_model_that_stays_rate_limited_is_left_for_the_next(
    router: Router, llm: MockOpenAI
) -> None:
    llm.script("alpha", *[RateLimited(retry_after_s=0.05)] * 3)
    routed = await router.route(request())
    assert routed.ok and routed.deployment is not None and routed.deployment.name == "beta"
    assert models_called(llm) == ["alpha", "alpha", "alpha", "beta"]  # 2 retries, then on


async def test_every_candidate_rate_limited_is_rate_limited(
    router: Router, llm: MockOpenAI
) -> None:
    llm.script("alpha", *[RateLimited(retry_after_s=0.01)] * 3)
    llm.script("beta", *[RateLimited(retry_after_s=0.01)] * 3)
    routed = await router.route(request())
    assert routed.error_code == ErrorCode.RATE_LIMITED
    assert "alpha, beta" in (routed.error_message or "")


async def test_a_retry_after_longer_than_allowed_falls_through_at_once(
    router: Router, llm: MockOpenAI
) -> None:
    llm.script("alpha", RateLimited(retry_after_s=3600))
    started = time.monotonic()
    routed = await router.route(request())
    assert routed.deployment is not None and routed.deployment.name == "beta"
    assert time.monotonic() - started < 3


async def test_a_hanging_model_is_cut_off_and_the_next_answers(
    nexus_settings: Settings, llm: MockOpenAI
) -> None:
    settings = nexus_settings.model_copy(update={"nexus_attempt_timeout_s": 0.5})
    router = Router(load_registry(settings), Providers(settings), settings)
    llm.script("alpha", Hang(5))
    started = time.monotonic()
    routed = await router.route(request())
    assert routed.deployment is not None and routed.deployment.name == "beta"
    assert [a.outcome for a in routed.attempts] == ["timeout", "ok"]
    assert time.monotonic() - started < 3


async def test_the_request_timeout_ends_with_timeout(
    llm: MockOpenAI, nexus_settings: Settings
) -> None:
    router = Router(load_registry(nexus_settings), Providers(nexus_settings), nexus_settings)
    llm.script("alpha", Hang(5))
    started = time.monotonic()
    routed = await router.route(request(timeout_s=0.6))
    assert routed.error_code == ErrorCode.TIMEOUT
    assert 0.5 < time.monotonic() - started < 3


async def test_a_context_window_error_moves_to_a_larger_model(
    router: Router, llm: MockOpenAI
) -> None:
    llm.script("alpha", ContextTooLong(limit=1000))
    routed = await router.route(request(task_type="coder", text="a long file " * 300))
    # beta's window is no larger than alpha's: skipped; gamma holds 100k tokens.
    assert routed.deployment is not None and routed.deployment.name == "gamma"
    assert models_called(llm) == ["alpha", "gamma"]
    assert routed.attempts[0].outcome == "context_window"


async def test_a_context_window_error_reaches_beyond_the_rule_for_a_larger_model(
    router: Router, llm: MockOpenAI
) -> None:
    llm.set_context_window("alpha", 100)
    llm.set_context_window("beta", 100)
    routed = await router.route(request(text="word " * 2000))  # simple: alpha, beta only
    assert routed.deployment is not None and routed.deployment.name == "gamma"
    assert models_called(llm) == ["alpha", "gamma"]


async def test_a_failing_model_cools_down_and_is_tried_last(
    router: Router, llm: MockOpenAI
) -> None:
    llm.script("alpha", *[ServerError(503)] * 3)
    for _ in range(3):
        routed = await router.route(request())
        assert routed.deployment is not None and routed.deployment.name == "beta"
    assert router.cooldowns.cooling("alpha")
    llm.reset()
    routed = await router.route(request())
    assert routed.deployment is not None and routed.deployment.name == "beta"
    assert models_called(llm) == ["beta"]  # alpha rests


async def test_a_cooling_model_is_still_tried_when_nothing_else_answers(
    router: Router, llm: MockOpenAI
) -> None:
    llm.script("alpha", *[ServerError(500)] * 3)
    for _ in range(3):
        await router.route(request())
    llm.reset()
    llm.script("beta", ServerError(500))
    routed = await router.route(request())
    assert routed.deployment is not None and routed.deployment.name == "alpha"
    assert models_called(llm) == ["beta", "alpha"]


async def test_every_candidate_failing_is_a_provider_error_naming_them(
    router: Router, llm: MockOpenAI
) -> None:
    llm.script("alpha", ServerError(500, "boom"))
    llm.script("beta", ServerError(502))
    routed = await router.route(request())
    assert routed.error_code == ErrorCode.PROVIDER_ERROR
    assert "tried alpha, beta" in (routed.error_message or "")


async def test_no_credentials_is_no_provider_with_the_fix(
    router: Router, llm: MockOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEXUS_TEST_LLM_KEY")
    routed = await router.route(request())
    assert routed.error_code == ErrorCode.NO_PROVIDER
    assert "local: NEXUS_TEST_LLM_KEY" in (routed.error_message or "")
    assert "no model for task type 'classifier' (simple tier) has credentials" in (
        routed.error_message or ""
    )
    assert llm.calls == []


async def test_pass_through_parameters_reach_the_model(router: Router, llm: MockOpenAI) -> None:
    await router.route(request(temperature=0.2, max_tokens=7, unrelated="x"))
    body = llm.calls[0].body
    assert (body["temperature"], body["max_tokens"]) == (0.2, 7)
    assert "unrelated" not in body
