"""Tool calling through the bus: a real Nexus, the local model server, native and text models."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from conftest import KEY_VARIABLE
from helpers import eventually
from nexus_support import RunningNexus, wait_for_message
from singularity.config import Settings
from singularity.nexus.tool_text import CLOSE, OPEN
from singularity.postgres.cluster import Cluster
from singularity.shared_queue import LlmRequest, Publisher
from singularity.testing.openai_server import MockOpenAI, Reply, ScriptedToolCall

# One model that calls tools natively, one that is asked through the text protocol.
REGISTRY = """
[models.native]
provider = "local"
litellm_model = "openai/native"
api_base = "{base}"
api_key_env = "{key}"
context_window = 100000
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0

[models.plain]
provider = "local"
litellm_model = "openai/plain"
api_base = "{base}"
api_key_env = "{key}"
context_window = 100000
input_usd_per_mtok = 0.0
output_usd_per_mtok = 0.0
tool_calling = "text"

[tiers]
simple = ["native"]
medium = ["native"]
complex = ["native"]

[task_types.local]
simple = ["plain"]
"""

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file of the repository.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
    },
    {"type": "function", "function": {"name": "run_tests", "parameters": {"type": "object"}}},
]
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "read_file", "arguments": '{"path": "README.md"}'},
}


@pytest.fixture
async def tool_nexus(
    nexus_settings: Settings, cluster: Cluster, llm: MockOpenAI, tmp_path: Path
) -> AsyncIterator[RunningNexus]:
    registry = tmp_path / "tools.toml"
    registry.write_text(REGISTRY.format(base=llm.base_url, key=KEY_VARIABLE))
    settings = nexus_settings.model_copy(update={"nexus_models_file": registry})
    async with RunningNexus(settings, cluster) as running:
        yield running


def request(reply_to: str, *, text_model: bool = False, **fields: Any) -> LlmRequest:
    values: dict[str, Any] = {
        "request_id": str(uuid.uuid4()),
        "reply_to": reply_to,
        "agent_id": "agent-tools",
        "task_type": "local" if text_model else "coder",
        "complexity": "simple",
        "messages": [
            {"role": "system", "content": "You fix bugs."},
            {"role": "user", "content": "What does the README say?"},
        ],
        "tools": TOOLS,
        "tool_choice": "auto",
    }
    values.update(fields)
    return LlmRequest.model_validate(values)


async def ask(pool: AsyncConnectionPool, reply_to: str, message: LlmRequest) -> dict[str, Any]:
    await Publisher(pool).send("llm_requests", message)
    return await wait_for_message(pool, reply_to, request_id=message.request_id)


async def test_a_native_model_answers_with_tool_calls(
    tool_nexus: RunningNexus, llm: MockOpenAI, bus_pool: AsyncConnectionPool, reply_queue: str
) -> None:
    llm.script(
        "native",
        Reply("", tool_calls=[ScriptedToolCall("read_file", {"path": "README.md"}, "call_1")]),
    )
    result = await ask(bus_pool, reply_queue, request(reply_queue))
    assert result["result"] == ""
    assert result["tool_calls"] == [CALL]
    assert result["finish_reason"] == "tool_calls"
    assert result["model"] == "native" and result["cost_usd"] is not None
    (call,) = llm.calls
    assert call.tools == TOOLS
    assert call.tool_choice == "auto"


async def test_a_text_model_answers_with_the_same_tool_calls(
    tool_nexus: RunningNexus, llm: MockOpenAI, bus_pool: AsyncConnectionPool, reply_queue: str
) -> None:
    written = json.dumps({"name": "read_file", "arguments": {"path": "README.md"}})
    llm.script("plain", Reply(f"I will read it.\n{OPEN}\n{written}\n{CLOSE}\n"))
    result = await ask(bus_pool, reply_queue, request(reply_queue, text_model=True))
    assert result["model"] == "plain"
    assert result["result"] == "I will read it."
    assert result["finish_reason"] == "tool_calls"
    (parsed,) = result["tool_calls"]
    assert parsed["type"] == "function" and parsed["id"].startswith("call_")
    assert parsed["function"]["name"] == "read_file"
    assert json.loads(parsed["function"]["arguments"]) == {"path": "README.md"}

    (call,) = llm.calls
    assert call.tools is None and call.tool_choice is None  # nothing a model could drop
    system = call.messages[0]["content"]
    assert system.startswith("You fix bugs.\n\n") and OPEN in system
    assert '"read_file"' in system and '"run_tests"' in system


def follow_up() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "What does the README say?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "# Singularity"},
    ]


async def test_a_follow_up_reaches_a_native_model_intact(
    tool_nexus: RunningNexus, llm: MockOpenAI, bus_pool: AsyncConnectionPool, reply_queue: str
) -> None:
    llm.script("native", Reply("It is titled Singularity."))
    result = await ask(bus_pool, reply_queue, request(reply_queue, messages=follow_up()))
    assert result["result"] == "It is titled Singularity."
    assert result["finish_reason"] == "stop" and "tool_calls" not in result
    (call,) = llm.calls
    assert call.messages[1]["tool_calls"] == [CALL]
    assert call.messages[2] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "# Singularity",
    }


async def test_a_follow_up_reaches_a_text_model_as_text(
    tool_nexus: RunningNexus, llm: MockOpenAI, bus_pool: AsyncConnectionPool, reply_queue: str
) -> None:
    llm.script("plain", Reply("It is titled Singularity."))
    message = request(reply_queue, text_model=True, messages=follow_up())
    result = await ask(bus_pool, reply_queue, message)
    assert result["result"] == "It is titled Singularity."
    (call,) = llm.calls
    roles = [m["role"] for m in call.messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert '"read_file"' in call.messages[2]["content"]
    assert "tool_calls" not in call.messages[2]
    assert call.messages[3]["content"].startswith('<tool_result name="read_file" id="call_1">')


async def test_the_seeds_request_shape_gets_the_seeds_result_shape(
    tool_nexus: RunningNexus, llm: MockOpenAI, bus_pool: AsyncConnectionPool
) -> None:
    seed = {
        "agent_id": f"seed-{uuid.uuid4().hex[:6]}",
        "task_type": "coder",
        "messages": [{"role": "user", "content": "hello"}],
    }
    llm.script("native", Reply("hi"))
    msg_id = await Publisher(bus_pool).send("llm_requests", seed)
    result = await wait_for_message(bus_pool, "llm_results", request_id=str(msg_id))
    assert (result["result"], result["model"]) == ("hi", "native")
    assert "tools" not in llm.calls[0].body


HOSTILE = {
    "too many tools": (
        {"tools": [{"type": "function", "function": {"name": f"t{i}"}} for i in range(200)]},
        "at most 128",
    ),
    "a bad name": (
        {"tools": [{"type": "function", "function": {"name": "rm -rf /"}}]},
        "should match pattern",
    ),
    "an oversized schema": (
        {
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "big", "parameters": {"description": "x" * 100_000}},
                }
            ]
        },
        "characters of JSON",
    ),
}


@pytest.mark.parametrize(("fields", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_hostile_request_is_dead_lettered_with_its_reason(
    tool_nexus: RunningNexus,
    llm: MockOpenAI,
    bus_pool: AsyncConnectionPool,
    reply_queue: str,
    fields: dict[str, Any],
    reason: str,
) -> None:
    request_id = str(uuid.uuid4())
    body = {
        "request_id": request_id,
        "reply_to": reply_queue,
        "agent_id": "agent-tools",
        "task_type": "coder",
        "messages": [{"role": "user", "content": "go"}],
        **fields,
    }
    await Publisher(bus_pool).send("llm_requests", body)
    result = await wait_for_message(bus_pool, reply_queue, request_id=request_id)
    assert result["error"]["code"] == "VALIDATION_ERROR"
    assert reason in result["error"]["message"]

    async def letter() -> str | None:
        async with bus_pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT message FROM pgmq.q_llm_requests_dlq")
            ).fetchall()
        found = [r[0] for r in rows if r[0]["original"].get("request_id") == request_id]
        return found[0]["reason"] if found else None

    await eventually(lambda: _has(letter, reason))
    assert llm.calls == []


async def _has(letter: Any, reason: str) -> bool:
    text = await letter()
    return text is not None and reason in text


async def test_malformed_tool_calls_from_a_model_do_not_stop_the_consumer(
    tool_nexus: RunningNexus, llm: MockOpenAI, bus_pool: AsyncConnectionPool, reply_queue: str
) -> None:
    llm.script(
        "native",
        Reply(
            "Trying.",
            tool_calls=[
                ScriptedToolCall("rm -rf /", {}),
                ScriptedToolCall("read_file", "{not json"),
                ScriptedToolCall("launch_missiles", {}),
                ScriptedToolCall("run_tests", "[" * 50_000 + "]" * 50_000),
            ],
        ),
        Reply("still here"),
    )
    hostile = await ask(bus_pool, reply_queue, request(reply_queue))
    assert "tool_calls" not in hostile
    assert hostile["finish_reason"] == "stop"
    lines = hostile["result"].splitlines()
    assert lines[0] == "Trying." and len(lines) == 5
    assert "launch_missiles" in hostile["result"]

    llm.script("plain", Reply(f"{OPEN}\n{{broken\n{CLOSE}"))
    text = await ask(bus_pool, reply_queue, request(reply_queue, text_model=True))
    assert text["result"] == f"{OPEN}\n{{broken\n{CLOSE}" and "tool_calls" not in text

    after = await ask(bus_pool, reply_queue, request(reply_queue))
    assert after["result"] == "still here"
