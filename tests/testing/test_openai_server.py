"""The scripted OpenAI server answers each step as OpenAI would, and records every call."""

from __future__ import annotations

import asyncio
import base64
import math
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from singularity.testing import (
    ContextTooLong,
    Hang,
    MockOpenAI,
    RateLimited,
    Reply,
    ScriptedToolCall,
    ServerError,
    embedding_vector,
    estimate_tokens,
)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[MockOpenAI]:
    with MockOpenAI(models=["listed"]) as server:
        yield server


@pytest.fixture
def server(shared_server: MockOpenAI) -> Iterator[MockOpenAI]:
    shared_server.reset()
    shared_server.delay_s = 0.0
    yield shared_server
    shared_server.reset()
    shared_server.delay_s = 0.0


@pytest.fixture
async def client(server: MockOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        yield http


async def chat(
    client: httpx.AsyncClient,
    model: str = "m",
    content: str = "hello there",
    *,
    timeout_s: float = 10,
    **extra: Any,
) -> httpx.Response:
    """One user message to `model`; `extra` goes into the request body."""
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return await client.post("/chat/completions", json=body, timeout=timeout_s)


async def test_default_answer_echoes_the_last_user_message(client: httpx.AsyncClient) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second question"}]},
    ]
    response = await client.post("/chat/completions", json={"model": "m", "messages": messages})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["object"] == "chat.completion"
    assert body["model"] == "m"
    assert isinstance(body["created"], int)
    assert body["id"].startswith("chatcmpl-")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: second question"},
            "finish_reason": "stop",
        }
    ]
    prompt = sum(estimate_tokens(t) for t in ("be brief", "first", "ok", "second question"))
    completion = estimate_tokens("echo: second question")
    assert body["usage"] == {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def test_tokens_are_four_characters_rounded_up() -> None:
    assert [estimate_tokens("x" * n) for n in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]


async def test_default_delay_applies_to_unscripted_answers(
    server: MockOpenAI, client: httpx.AsyncClient
) -> None:
    server.delay_s = 0.2
    started = time.monotonic()
    response = await chat(client)
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2


async def test_replies_are_consumed_in_order_then_echo(
    server: MockOpenAI, client: httpx.AsyncClient
) -> None:
    server.script("m", Reply("one"), Reply("two", prompt_tokens=100, completion_tokens=7))
    assert server.pending("m") == 2
    first, second, third = [(await chat(client)).json() for _ in range(3)]
    assert first["choices"][0]["message"]["content"] == "one"
    assert first["usage"]["completion_tokens"] == estimate_tokens("one")
    assert second["choices"][0]["message"]["content"] == "two"
    assert second["usage"] == {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107}
    assert third["choices"][0]["message"]["content"] == "echo: hello there"
    assert server.pending("m") == 0


async def test_scripts_are_per_model(server: MockOpenAI, client: httpx.AsyncClient) -> None:
    server.script("a", Reply("for a"))
    other = (await chat(client, model="b")).json()
    mine = (await chat(client, model="a")).json()
    assert other["choices"][0]["message"]["content"] == "echo: hello there"
    assert mine["choices"][0]["message"]["content"] == "for a"


async def test_reply_delay(server: MockOpenAI, client: httpx.AsyncClient) -> None:
    server.delay_s = 5.0  # a scripted reply has its own delay, not the default one
    server.script("m", Reply("slow", delay_s=0.2))
    started = time.monotonic()
    response = await chat(client)
    elapsed = time.monotonic() - started
    assert response.json()["choices"][0]["message"]["content"] == "slow"
    assert 0.2 <= elapsed < 2


@pytest.mark.parametrize(("wait", "header"), [(2.0, "2"), (0.5, "0.5")])
async def test_rate_limited(
    server: MockOpenAI, client: httpx.AsyncClient, wait: float, header: str
) -> None:
    server.script("m", RateLimited(retry_after_s=wait))
    response = await chat(client)
    assert response.status_code == 429
    assert response.headers["retry-after"] == header
    error = response.json()["error"]
    assert error["type"] == "requests"
    assert error["code"] == "rate_limit_exceeded"
    assert error["param"] is None
    assert "Rate limit reached" in error["message"]


async def test_server_error(server: MockOpenAI, client: httpx.AsyncClient) -> None:
    server.script("m", ServerError(), ServerError(503, "overloaded"))
    first = await chat(client)
    second = await chat(client)
    assert first.status_code == 500
    assert first.json()["error"]["type"] == "server_error"
    assert second.status_code == 503
    assert second.json() == {
        "error": {"message": "overloaded", "type": "server_error", "param": None, "code": None}
    }


async def test_hang_outlasts_a_client_timeout(
    server: MockOpenAI, client: httpx.AsyncClient
) -> None:
    server.script("m", Hang(5))
    with pytest.raises(httpx.ReadTimeout):
        await chat(client, timeout_s=0.2)
    assert [c.status for c in server.calls_for("m")] == [200]  # recorded on arrival


async def test_hang_then_answers_normally(server: MockOpenAI, client: httpx.AsyncClient) -> None:
    server.script("m", Hang(0.2))
    started = time.monotonic()
    response = await chat(client)
    assert time.monotonic() - started >= 0.2
    assert response.json()["choices"][0]["message"]["content"] == "echo: hello there"


def expected_context_error(limit: int, tokens: int) -> dict[str, Any]:
    return {
        "error": {
            "message": f"This model's maximum context length is {limit} tokens. However, your "
            f"messages resulted in {tokens} tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


async def test_context_too_long(server: MockOpenAI, client: httpx.AsyncClient) -> None:
    server.script("m", ContextTooLong(), ContextTooLong(limit=10))
    first = await chat(client)  # a short request still reads as an overflow
    second = await chat(client, content="x" * 400)
    assert first.status_code == 400
    assert first.json() == expected_context_error(8192, 8193)
    assert second.json() == expected_context_error(10, 100)


async def test_context_window_refuses_long_prompts_without_consuming_steps(
    server: MockOpenAI, client: httpx.AsyncClient
) -> None:
    server.set_context_window("m", 50)
    server.script("m", Reply("fits"))
    too_long = await chat(client, content="y" * 204)
    assert too_long.status_code == 400
    assert too_long.json() == expected_context_error(50, 51)
    fits = await chat(client, content="y" * 200)
    assert fits.json()["choices"][0]["message"]["content"] == "fits"
    assert (await chat(client, model="other", content="y" * 400)).status_code == 200
    server.set_context_window("m", None)
    assert (await chat(client, content="y" * 400)).status_code == 200


async def test_calls_are_recorded(server: MockOpenAI, client: httpx.AsyncClient) -> None:
    server.script("a", RateLimited(), Reply("ok"))
    before = time.monotonic()
    await chat(client, model="a", content="1")
    await chat(client, model="b", content="2")
    await chat(client, model="a", content="3", temperature=0.5)
    calls = server.calls
    assert [(c.model, c.status) for c in calls] == [("a", 429), ("b", 200), ("a", 200)]
    assert before <= calls[0].at <= calls[1].at <= calls[2].at <= time.monotonic()
    assert calls[2].body == {
        "model": "a",
        "messages": [{"role": "user", "content": "3"}],
        "temperature": 0.5,
    }
    assert [c.body["messages"][0]["content"] for c in server.calls_for("a")] == ["1", "3"]

    server.script("a", Reply("left over"))
    server.set_context_window("a", 1)
    server.reset()
    assert server.calls == []
    assert server.pending("a") == 0
    assert (await chat(client, model="a")).json()["choices"][0]["message"]["content"] == (
        "echo: hello there"
    )


async def test_a_reply_may_call_tools(server: MockOpenAI, client: httpx.AsyncClient) -> None:
    server.script(
        "m",
        Reply(
            "",
            tool_calls=[
                ScriptedToolCall("read_file", {"path": "a.py"}, id="call_a"),
                ScriptedToolCall("run_tests", "{not json"),
            ],
        ),
    )
    tools = [{"type": "function", "function": {"name": "read_file"}}]
    response = await chat(client, tools=tools, tool_choice="required")
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    first, second = choice["message"]["tool_calls"]
    assert first == {
        "id": "call_a",
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
    }
    assert second["function"] == {"name": "run_tests", "arguments": "{not json"}
    assert second["id"].startswith("call_mock")
    (call,) = server.calls
    assert (call.tools, call.tool_choice) == (tools, "required")
    assert call.messages == [{"role": "user", "content": "hello there"}]


async def test_a_call_without_tools_shows_none(
    server: MockOpenAI, client: httpx.AsyncClient
) -> None:
    await chat(client)
    assert (server.calls[0].tools, server.calls[0].tool_choice) == (None, None)


async def test_a_scripted_finish_reason_is_sent(
    server: MockOpenAI, client: httpx.AsyncClient
) -> None:
    server.script("m", Reply("cut", finish_reason="length"))
    choice = (await chat(client)).json()["choices"][0]
    assert (choice["finish_reason"], choice["message"]["content"]) == ("length", "cut")


async def test_stream_is_refused(server: MockOpenAI, client: httpx.AsyncClient) -> None:
    server.script("m", Reply("kept"))
    response = await chat(client, stream=True)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "Streaming is not supported by this server."
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "stream"
    assert server.pending("m") == 1
    assert server.calls[-1].status == 400


async def test_malformed_requests_are_refused(client: httpx.AsyncClient) -> None:
    not_json = await client.post("/chat/completions", content=b"{nope")
    no_model = await client.post("/chat/completions", json={"messages": []})
    no_messages = await client.post("/chat/completions", json={"model": "m", "messages": []})
    for response in (not_json, no_model, no_messages):
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"


async def test_embeddings_are_deterministic_unit_vectors(client: httpx.AsyncClient) -> None:
    texts = ["alpha", "beta", "alpha"]
    response = await client.post("/embeddings", json={"model": "e", "input": texts})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert body["model"] == "e"
    vectors = [item["embedding"] for item in body["data"]]
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    assert all(item["object"] == "embedding" for item in body["data"])
    assert all(len(v) == 64 for v in vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0) for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    assert vectors[0] == embedding_vector("alpha")
    tokens = estimate_tokens("alpha") * 2 + estimate_tokens("beta")
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}

    again = await client.post("/embeddings", json={"model": "e", "input": "alpha"})
    assert again.json()["data"][0]["embedding"] == vectors[0]


async def test_embeddings_dimensions_base64_and_token_arrays(client: httpx.AsyncClient) -> None:
    sized = await client.post("/embeddings", json={"model": "e", "input": "a", "dimensions": 8})
    assert len(sized.json()["data"][0]["embedding"]) == 8

    packed = await client.post(
        "/embeddings", json={"model": "e", "input": "alpha", "encoding_format": "base64"}
    )
    raw = base64.b64decode(packed.json()["data"][0]["embedding"])
    decoded = struct.unpack("<64f", raw)
    expected = embedding_vector("alpha")
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(decoded, expected, strict=True))

    tokens = await client.post("/embeddings", json={"model": "e", "input": [[1, 2, 3], [4]]})
    assert tokens.json()["usage"]["prompt_tokens"] == 4
    bad = await client.post("/embeddings", json={"model": "e", "input": [{"x": 1}]})
    assert bad.status_code == 400


async def test_models_lists_the_names_known(server: MockOpenAI, client: httpx.AsyncClient) -> None:
    server.script("scripted", Reply("x"))
    await chat(client, model="called")
    body = (await client.get("/models")).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["called", "listed", "scripted"]
    assert all(m["object"] == "model" for m in body["data"])


async def test_concurrent_calls_each_consume_one_step(
    server: MockOpenAI, client: httpx.AsyncClient
) -> None:
    server.delay_s = 0.1
    server.script("m", *(Reply(f"r{i}") for i in range(32)))
    started = time.monotonic()
    responses = await asyncio.gather(*(chat(client) for _ in range(64)))
    elapsed = time.monotonic() - started
    contents = [r.json()["choices"][0]["message"]["content"] for r in responses]
    assert sorted(c for c in contents if c.startswith("r")) == sorted(f"r{i}" for i in range(32))
    assert contents.count("echo: hello there") == 32
    assert len(server.calls) == 64
    assert elapsed < 2  # the delays overlap


def test_stop_does_not_wait_for_hanging_calls() -> None:
    server = MockOpenAI().start()
    server.script("m", Hang(30))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=server.base_url) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.post("/chat/completions", json=body, timeout=0.2)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5
        with pytest.raises(httpx.ConnectError):
            http.post("/chat/completions", json=body, timeout=1)


def test_a_taken_port_fails_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            MockOpenAI(port=taken.getsockname()[1]).start()


def test_base_url_needs_a_port() -> None:
    with pytest.raises(RuntimeError):
        _ = MockOpenAI().base_url
    assert MockOpenAI(port=8123).base_url == "http://127.0.0.1:8123/v1"


def test_command_line_serves_and_prints_its_base_url() -> None:
    command = [
        sys.executable,
        "-m",
        "singularity.testing.openai_server",
        "--port",
        "0",
        "--delay-ms",
        "10",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        body = {"model": "m", "messages": [{"role": "user", "content": "ping"}]}
        deadline = time.monotonic() + 10
        while True:
            try:
                response = httpx.post(f"{base_url}/chat/completions", json=body, timeout=5)
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert response.json()["choices"][0]["message"]["content"] == "echo: ping"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode in (0, -15), stderr
    assert "RuntimeWarning" not in stderr
