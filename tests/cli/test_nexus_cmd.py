"""`singularity nexus ...` and `singularity hitl ...`, run as a user runs them."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from psycopg_pool import AsyncConnectionPool

from helpers import singularity
from nexus_support import RunningNexus, wait_for_message
from singularity.config import Settings
from singularity.nexus.token import ui_token
from singularity.shared_queue import Publisher
from singularity.testing.openai_server import MockOpenAI, Reply


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = await asyncio.to_thread(singularity, *args, env=env)
    return result.returncode, result.stdout, result.stderr


def test_token_prints_the_stored_token_and_the_sign_in_address(settings: Settings) -> None:
    printed = singularity("nexus", "token")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == ui_token(settings)
    address = singularity("nexus", "token", "--url", env={"PORT": "3999"})
    assert address.stdout.strip() == f"http://127.0.0.1:3999/?token={ui_token(settings)}"


def test_models_lists_the_registry_with_credentials_and_prices() -> None:
    listed = singularity("nexus", "models", "--json", env={"ANTHROPIC_API_KEY": "sk-ant-x"})
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)["models"]}
    assert rows["claude-sonnet"]["credentials"] is True
    assert rows["gpt-4o-mini"]["credentials"] is False
    assert rows["claude-sonnet"]["price"] == "registry"
    table = singularity("nexus", "models")
    assert "claude-sonnet" in table.stdout


def test_models_without_any_provider_says_how_to_configure_one() -> None:
    table = singularity("nexus", "models")
    assert "No provider is configured" in table.stdout
    assert "OPENAI_BASE_URL" in table.stdout


def test_a_bad_registry_file_is_one_line(tmp_path: object) -> None:
    result = singularity("nexus", "models", env={"NEXUS_MODELS_FILE": "/nonexistent.toml"})
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: NEXUS_MODELS_FILE: cannot read")


async def test_ask_sends_one_request_through_the_queue_and_prints_the_answer(
    nexus: RunningNexus, llm: MockOpenAI
) -> None:
    llm.script("alpha", Reply("forty-two", prompt_tokens=12, completion_tokens=3))
    code, out, err = await cli("nexus", "ask", "What is six times seven?", "--task-type", "parser")
    assert code == 0, err
    assert out.splitlines()[0] == "forty-two"
    assert "model alpha · simple tier · 12+3 tokens · $0.000018" in out
    body = llm.calls[0].body
    assert body["messages"] == [{"role": "user", "content": "What is six times seven?"}]


async def test_ask_reports_the_routers_error(
    nexus: RunningNexus, llm: MockOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NEXUS_TEST_LLM_KEY")
    code, _, err = await cli("nexus", "ask", "hi")
    assert code == 1
    assert err.strip().startswith("error: NO_PROVIDER: no model for task type 'chat'")


async def test_hitl_commands_do_what_the_buttons_do(
    nexus: RunningNexus, bus_pool: AsyncConnectionPool, nexus_db: AsyncConnectionPool
) -> None:
    approval, rejected, question = (str(uuid.uuid4()) for _ in range(3))
    publisher = Publisher(bus_pool)
    for ident in (approval, rejected):
        await publisher.send(
            "approval_requests",
            {"id": ident, "file_path": "lib/x.py", "diff": "+x", "description": "add x"},
        )
    await publisher.send("question_requests", {"id": question, "question": "Tabs or spaces?"})

    async def listed() -> dict[str, list[dict[str, object]]]:
        code, out, err = await cli("hitl", "list", "--json")
        assert code == 0, err
        return json.loads(out)

    for _ in range(100):
        pending = await listed()
        ids = {i["id"] for i in pending["approvals"]} | {i["id"] for i in pending["questions"]}
        if {approval, rejected, question} <= ids:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the requests never showed")

    code, out, _ = await cli("hitl", "show", approval)
    assert code == 0 and "lib/x.py" in out and "+x" in out
    code, out, err = await cli("hitl", "approve", approval, "--user", "rita")
    assert (code, out.strip()) == (0, f"approved {approval} (lib/x.py)"), err
    code, _, err = await cli("hitl", "approve", approval)
    assert code == 1 and err.strip() == "error: this approval is already approved"
    code, _, err = await cli("hitl", "reject", rejected)
    assert code == 2 and "Missing option '--reason'" in err
    code, _, err = await cli("hitl", "reject", rejected, "--reason", "too clever")
    assert code == 0, err
    code, _, err = await cli("hitl", "answer", question, "spaces")
    assert code == 0, err
    code, _, err = await cli("hitl", "answer", "not-an-id", "x")
    assert code == 2 and err.strip() == "error: 'not-an-id' is not a question id (a UUID)"

    assert (await wait_for_message(bus_pool, "approval_responses", request_id=approval))["approved"]
    refused = await wait_for_message(bus_pool, "approval_responses", request_id=rejected)
    assert (refused["approved"], refused["reason"]) == (False, "too clever")
    answered = await wait_for_message(bus_pool, "question_responses", request_id=question)
    assert answered["response"] == "spaces"
    async with nexus_db.connection() as conn:
        users = await (
            await conn.execute(
                "SELECT user_id FROM hitl_metrics WHERE request_id = %s", (approval,)
            )
        ).fetchall()
    assert users == [("rita",)]
