"""Asking the platform: each request is recorded, sent with this instance's reply_to, and
resolved by its own answer; a step asked again after a restart gets its recorded answer."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from helpers import eventually
from nexus_support import RunningNexus
from singularity.config import Settings
from singularity.errors import SingularityError
from singularity.orchestrator.client import LlmFailed, RequestTimedOut
from singularity.orchestrator.platform import Connected, connect
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import open_pool
from singularity.postgres.topology import Database
from singularity.testing.openai_server import MockOpenAI, Reply, ServerError

HELLO = [{"role": "user", "content": "say hello"}]


@pytest.fixture
async def instance_db(instance_cluster: Cluster) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(instance_cluster.admin(Database.SINGULARITY), name="test-s2", max_size=2)
    yield pool
    await pool.close()


async def _archived(pool: AsyncConnectionPool, queue: str, request_id: str) -> int:
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                f"SELECT count(*) FROM pgmq.a_{queue} WHERE message->>'request_id' = %s",
                (request_id,),
            )
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_llm_resolves_with_the_answer_and_records_cost(
    nexus: RunningNexus, llm: MockOpenAI, singularity_2: Connected, instance_db: AsyncConnectionPool
) -> None:
    llm.script("alpha", Reply("hello there", prompt_tokens=100, completion_tokens=50))
    result = await singularity_2.client.llm(HELLO, agent_id="coder-t1", task_type="simple_chat")
    assert result.result == "hello there"
    assert result.model == "alpha"
    async with instance_db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT agent_id, model, prompt_tokens, completion_tokens, cost_usd FROM llm_calls "
                "WHERE request_id = %s",
                (result.request_id,),
            )
        ).fetchone()
        pending = await (
            await conn.execute(
                "SELECT reply_to, answered_at IS NOT NULL FROM pending_requests "
                "WHERE request_id = %s",
                (result.request_id,),
            )
        ).fetchone()
    assert row == ("coder-t1", "alpha", 100, 50, pytest.approx(100 / 1e6 * 1.0 + 50 / 1e6 * 2.0))
    assert pending == ("llm_results_2", True)


async def test_an_error_answer_raises_with_its_code(
    nexus: RunningNexus, llm: MockOpenAI, singularity_2: Connected
) -> None:
    for model in ("alpha", "beta"):
        llm.script(model, *[ServerError(500)] * 4)
    with pytest.raises(LlmFailed, match="the model call failed"):
        await singularity_2.client.llm(HELLO, agent_id="coder-t2", task_type="simple_chat")


async def test_two_instances_each_get_only_their_own_results(
    nexus: RunningNexus,
    llm: MockOpenAI,
    cluster: Cluster,
    instances: tuple[int, ...],
    nexus_settings: Settings,
    bus_pool: AsyncConnectionPool,
) -> None:
    async with (
        connect(cluster.with_instance(2), nexus_settings, name="t-i2") as two,
        connect(cluster.with_instance(3), nexus_settings, name="t-i3") as three,
    ):
        answers = await asyncio.gather(
            *(
                side.client.llm(
                    [{"role": "user", "content": f"instance {n} call {i}"}],
                    agent_id=f"agent-{n}",
                    task_type="simple_chat",
                )
                for i in range(3)
                for n, side in ((2, two), (3, three))
            )
        )
    for index, answer in enumerate(answers):
        n = 2 if index % 2 == 0 else 3
        assert answer.result == f"echo: instance {n} call {index // 2}"
        own, other = (f"llm_results_{n}", f"llm_results_{5 - n}")
        assert await _archived(bus_pool, own, answer.request_id) == 1
        assert await _archived(bus_pool, other, answer.request_id) == 0
        assert await _archived(bus_pool, "llm_results", answer.request_id) == 0


async def test_a_step_asked_again_after_a_restart_gets_the_answer_that_arrived_meanwhile(
    nexus: RunningNexus,
    llm: MockOpenAI,
    instance_cluster: Cluster,
    nexus_settings: Settings,
    instance_db: AsyncConnectionPool,
) -> None:
    async with connect(instance_cluster, nexus_settings, name="t-before", inbox=False) as before:
        agent = "coder-restart"
        await before.store.ensure_agent(agent, "coder")
        task_id = await before.store.create_task(
            agent_id=agent, description="d", repo="/r", test_command="true", runner="r1"
        )
        # The process "dies" while waiting: the request is recorded and sent, no answer yet.
        asking = asyncio.create_task(
            before.client.llm(
                HELLO, agent_id=agent, task_type="simple_chat", task_id=task_id, step="plan"
            )
        )
        await eventually(lambda: _sent(instance_db, task_id))
        asking.cancel()
    # Meanwhile the answer arrives with no one listening; the next process records it.
    async with connect(instance_cluster, nexus_settings, name="t-after") as after:
        result = await after.client.llm(
            HELLO, agent_id=agent, task_type="simple_chat", task_id=task_id, step="plan"
        )
        again = await after.client.llm(
            HELLO, agent_id=agent, task_type="simple_chat", task_id=task_id, step="plan"
        )
    assert result.result == "echo: say hello"
    assert again.request_id == result.request_id
    assert len(llm.calls) == 1  # asked once, answered once


async def _sent(pool: AsyncConnectionPool, task_id: int) -> bool:
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT sent_at IS NOT NULL FROM pending_requests WHERE task_id = %s", (task_id,)
            )
        ).fetchone()
    return bool(row and row[0])


async def test_no_answer_in_time_says_who_should_have_answered(
    singularity_2: Connected, bus_pool: AsyncConnectionPool
) -> None:
    code = f"print('{uuid.uuid4()}')"
    try:
        with pytest.raises(
            RequestTimedOut, match=r"on job_results_2 after 0.3 s: is a Genesis worker"
        ):
            await singularity_2.client.run_code(code, "python", timeout_s=0.3)
    finally:  # no later Genesis test should run it
        async with bus_pool.connection() as conn:
            await conn.execute(
                "DELETE FROM pgmq.q_job_requests WHERE message->>'code' = %s", (code,)
            )


async def test_an_answer_for_no_recorded_request_is_archived_and_a_bad_one_dead_lettered(
    singularity_2: Connected, bus_pool: AsyncConnectionPool
) -> None:
    async with bus_pool.connection() as conn:
        for body in ({"request_id": "nobody-asked", "output": "x"}, {"output": "no id"}):
            await conn.execute("SELECT pgmq.send('job_results_2', %s::jsonb)", (json.dumps(body),))

    async def settled() -> bool:
        archived = await _archived(bus_pool, "job_results_2", "nobody-asked")
        async with bus_pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) FROM pgmq.q_job_results_2_dlq "
                    "WHERE message->'original'->>'output' = 'no id' "
                    "AND message->>'reason' LIKE '%request_id: Field required%'"
                )
            ).fetchone()
        return archived == 1 and bool(row and row[0])

    await eventually(settled)


async def test_an_instance_without_its_queues_is_told_how_to_create_them(
    cluster: Cluster, settings: Settings
) -> None:
    with pytest.raises(SingularityError, match=r"run `singularity db init --instance 9`"):
        async with connect(cluster.with_instance(9), settings):
            pass


async def test_an_answer_whose_tier_is_not_text_is_still_recorded(
    singularity_2: Connected, instance_db: AsyncConnectionPool, bus_pool: AsyncConnectionPool
) -> None:
    # Found by tests/shared_queue/test_fuzz_messages.py: `tier` is a field LlmResult keeps
    # unchecked; an object there could not be written to llm_calls, and the answer was retried
    # until it was dead-lettered, its caller never hearing of it.
    request_id = str(uuid.uuid4())
    await singularity_2.store.record_request(
        request_id=request_id,
        task_id=None,
        step=None,
        kind="llm",
        queue="llm_requests",
        reply_to="llm_results_2",
        body={"agent_id": "coder-t9", "task_type": "simple_chat"},
        deadline=None,
    )
    answer = {"request_id": request_id, "result": "hi", "model": "alpha", "tier": {"odd": 1}}
    async with bus_pool.connection() as conn:
        await conn.execute("SELECT pgmq.send('llm_results_2', %s::jsonb)", (json.dumps(answer),))

    async def recorded() -> bool:
        return await singularity_2.store.answer(request_id) is not None

    await eventually(recorded)
    async with instance_db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT agent_id, model, tier FROM llm_calls WHERE request_id = %s", (request_id,)
            )
        ).fetchone()
    assert row == ("coder-t9", "alpha", None)
