"""LLM requests through the bus: answered on reply_to, recorded, one effect, clear errors."""

from __future__ import annotations

import json
import uuid

import pytest
from psycopg_pool import AsyncConnectionPool

from helpers import count, eventually
from nexus_support import RunningNexus, wait_for_message
from singularity.config import Settings
from singularity.postgres.cluster import Cluster
from singularity.shared_queue import LlmRequest, Publisher
from singularity.testing.openai_server import MockOpenAI, Reply, ServerError


def llm_request(reply_to: str, **fields: object) -> LlmRequest:
    values: dict[str, object] = {
        "request_id": str(uuid.uuid4()),
        "reply_to": reply_to,
        "agent_id": "agent-7",
        "task_type": "classifier",
        "messages": [{"role": "user", "content": "Is this a bug?"}],
    }
    values.update(fields)
    return LlmRequest.model_validate(values)


async def test_a_request_is_answered_on_its_reply_queue_and_recorded(
    nexus: RunningNexus,
    llm: MockOpenAI,
    bus_pool: AsyncConnectionPool,
    nexus_db: AsyncConnectionPool,
    reply_queue: str,
) -> None:
    llm.script("alpha", ServerError(500), Reply("yes", prompt_tokens=200, completion_tokens=10))
    llm.script("beta", Reply("yes", prompt_tokens=200, completion_tokens=10))
    request = llm_request(reply_queue)
    await Publisher(bus_pool).send("llm_requests", request)

    result = await wait_for_message(bus_pool, reply_queue, request_id=request.request_id)
    assert result["result"] == "yes"
    assert result["model"] == "beta"
    assert result["usage"] == {"prompt_tokens": 200, "completion_tokens": 10}
    assert result["cost_usd"] == 0.00011  # 200 x $0.5/M + 10 x $1/M
    assert result["overhead_ms"] >= 0
    assert [a["model"] for a in result["attempts"]] == ["alpha", "beta"]

    async with nexus_db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT agent_id, task_type, tier, tier_reason, outcome, model, attempts, "
                "prompt_tokens, completion_tokens, cost_usd::float8 FROM llm_requests "
                "WHERE request_id = %s",
                (request.request_id,),
            )
        ).fetchone()
    assert row is not None
    agent, task_type, tier, reason, outcome, model, attempts, prompt, completion, cost = row
    assert (agent, task_type, tier, outcome, model) == (
        "agent-7",
        "classifier",
        "simple",
        "ok",
        "beta",
    )
    assert reason == "task type 'classifier'"
    assert [a["outcome"] for a in attempts] == ["unavailable", "ok"]
    assert (prompt, completion, cost) == (200, 10, 0.00011)


async def test_a_recorded_answer_is_sent_again_without_asking_a_provider(
    nexus: RunningNexus,
    llm: MockOpenAI,
    bus_pool: AsyncConnectionPool,
    nexus_db: AsyncConnectionPool,
    reply_queue: str,
) -> None:
    """A redelivery after the answer was recorded (a crash before the archive) has no second
    provider call: the answer comes from the request log."""
    request = llm_request(reply_queue)
    answer = {"request_id": request.request_id, "result": "from the log", "model": "alpha"}
    async with nexus_db.connection() as conn:
        await conn.execute(
            "INSERT INTO llm_requests (request_id, agent_id, task_type, tier, tier_reason, "
            "outcome, model, reply_to, reply, received_at) VALUES "
            "(%s, 'agent-7', 'classifier', 'simple', 'test', 'ok', 'alpha', %s, %s, now())",
            (request.request_id, reply_queue, json.dumps(answer)),
        )
    await Publisher(bus_pool).send("llm_requests", request)
    result = await wait_for_message(bus_pool, reply_queue, request_id=request.request_id)
    assert result["result"] == "from the log"
    assert llm.calls == []


async def test_the_same_request_sent_twice_has_one_effect(
    nexus: RunningNexus, llm: MockOpenAI, bus_pool: AsyncConnectionPool, reply_queue: str
) -> None:
    request = llm_request(reply_queue)
    await Publisher(bus_pool).send_batch("llm_requests", [request, request])
    await wait_for_message(bus_pool, reply_queue, request_id=request.request_id)
    await eventually(lambda: _archived_both(bus_pool, request.request_id))
    assert await count(bus_pool, f"q_{reply_queue}") == 1
    assert len(llm.calls) == 1


async def _archived_both(pool: AsyncConnectionPool, request_id: str) -> bool:
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) FROM pgmq.a_llm_requests WHERE message->>'request_id' = %s",
                (request_id,),
            )
        ).fetchone()
    return bool(row and row[0] == 2)


async def test_an_invalid_request_is_dead_lettered_and_its_asker_told(
    nexus: RunningNexus, llm: MockOpenAI, bus_pool: AsyncConnectionPool, reply_queue: str
) -> None:
    request_id = str(uuid.uuid4())
    await Publisher(bus_pool).send(
        "llm_requests", {"request_id": request_id, "reply_to": reply_queue, "agent_id": "a"}
    )
    result = await wait_for_message(bus_pool, reply_queue, request_id=request_id)
    assert result["error"]["code"] == "VALIDATION_ERROR"
    assert "task_type" in result["error"]["message"]
    async with bus_pool.connection() as conn:
        rows = await (await conn.execute("SELECT message FROM pgmq.q_llm_requests_dlq")).fetchall()
    letters = [r[0] for r in rows if r[0]["original"].get("request_id") == request_id]
    assert letters and "task_type: Field required" in letters[0]["reason"]
    assert llm.calls == []


async def test_a_reply_queue_nexus_may_not_use_is_dead_lettered(
    nexus: RunningNexus, llm: MockOpenAI, bus_pool: AsyncConnectionPool
) -> None:
    request = llm_request("job_results")  # exists, but Nexus may not send there
    await Publisher(bus_pool).send("llm_requests", request)

    async def dead() -> bool:
        async with bus_pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT message FROM pgmq.q_llm_requests_dlq")
            ).fetchall()
        return any(r[0]["original"].get("request_id") == request.request_id for r in rows)

    await eventually(dead)
    assert llm.calls == []


async def test_a_spent_budget_refuses_with_budget_exceeded(
    nexus_settings: Settings,
    cluster: Cluster,
    llm: MockOpenAI,
    bus_pool: AsyncConnectionPool,
    reply_queue: str,
) -> None:
    agent = f"spender-{uuid.uuid4().hex[:6]}"
    settings = nexus_settings.model_copy(update={"nexus_agent_daily_budget_usd": 0.001})
    async with RunningNexus(settings, cluster):
        llm.script("alpha", Reply("costly", prompt_tokens=1000, completion_tokens=1000))
        first = llm_request(reply_queue, agent_id=agent)
        await Publisher(bus_pool).send("llm_requests", first)
        done = await wait_for_message(bus_pool, reply_queue, request_id=first.request_id)
        assert done["cost_usd"] == 0.003
        second = llm_request(reply_queue, agent_id=agent)
        await Publisher(bus_pool).send("llm_requests", second)
        refused = await wait_for_message(bus_pool, reply_queue, request_id=second.request_id)
    assert refused["error"]["code"] == "BUDGET_EXCEEDED"
    assert agent in refused["error"]["message"]
    assert len(llm.calls) == 1


async def test_no_provider_is_answered_with_how_to_configure_one(
    nexus: RunningNexus,
    llm: MockOpenAI,
    bus_pool: AsyncConnectionPool,
    reply_queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NEXUS_TEST_LLM_KEY")
    request = llm_request(reply_queue)
    await Publisher(bus_pool).send("llm_requests", request)
    result = await wait_for_message(bus_pool, reply_queue, request_id=request.request_id)
    assert result["error"]["code"] == "NO_PROVIDER"
    assert "NEXUS_TEST_LLM_KEY" in result["error"]["message"]
