"""Calls of a native answer are checked against the request's tools; the rest stays text."""

from __future__ import annotations

from typing import Any

from singularity.nexus.tool_calls import ToolSet, checked_call, native_answer
from singularity.shared_queue.messages import (
    MAX_TOOL_ARGUMENTS_CHARS,
    MAX_TOOL_CALLS,
    LlmRequest,
    Tool,
)

TOOLS = ToolSet((Tool.model_validate({"type": "function", "function": {"name": "run_tests"}}),))


def raw(name: Any, arguments: Any, call_id: Any = "call_1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def message(*calls: dict[str, Any], content: str | None = None) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "tool_calls": list(calls)}


def test_a_request_without_tools_has_no_tool_set() -> None:
    request = LlmRequest(agent_id="a", task_type="t", messages=[{"role": "user", "content": "x"}])
    assert ToolSet.of(request) is None


def test_the_parameters_sent_are_openai_shaped() -> None:
    request = LlmRequest.model_validate(
        {
            "agent_id": "a",
            "task_type": "t",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "run_tests"}}],
            "tool_choice": {"type": "function", "function": {"name": "run_tests"}},
        }
    )
    tools = ToolSet.of(request)
    assert tools is not None
    assert tools.as_params() == {
        "tools": [{"type": "function", "function": {"name": "run_tests"}}],
        "tool_choice": {"type": "function", "function": {"name": "run_tests"}},
    }


def test_a_native_call_is_kept_as_the_model_wrote_it() -> None:
    answer = native_answer(message(raw("run_tests", '{"k": 1}')), "tool_calls", TOOLS)
    assert answer.text == "" and answer.finish_reason == "tool_calls"
    assert answer.tool_calls[0].model_dump() == raw("run_tests", '{"k": 1}')


def test_a_native_answer_without_calls_is_its_text() -> None:
    answer = native_answer({"role": "assistant", "content": "hello"}, "stop", TOOLS)
    assert (answer.text, answer.tool_calls, answer.finish_reason) == ("hello", (), "stop")


def test_bad_native_calls_become_text_and_good_ones_stay_calls() -> None:
    answer = native_answer(
        message(
            raw("run_tests", "{}"),
            raw("rm -rf /", "{}", "call_2"),
            raw("run_tests", "{not json", "call_3"),
            raw("other_tool", "{}", "call_4"),
            content="Running.",
        ),
        "tool_calls",
        TOOLS,
    )
    assert [c.id for c in answer.tool_calls] == ["call_1"]
    lines = answer.text.splitlines()
    assert lines[0] == "Running." and len(lines) == 4
    assert all(line.startswith("[a tool call that could not be used: ") for line in lines[1:])
    assert "rm -rf /" in lines[1] and "{not json" in lines[2] and "other_tool" in lines[3]


def test_calls_without_tools_offered_stay_text() -> None:
    answer = native_answer(message(raw("run_tests", "{}")), "tool_calls", None)
    assert answer.tool_calls == () and answer.finish_reason == "stop"
    assert "run_tests" in answer.text


def test_duplicate_or_missing_ids_are_replaced() -> None:
    answer = native_answer(
        message(raw("run_tests", "{}"), raw("run_tests", "{}"), raw("run_tests", "{}", None)),
        "tool_calls",
        TOOLS,
    )
    ids = [c.id for c in answer.tool_calls]
    assert ids[0] == "call_1" and len(set(ids)) == 3


def test_hostile_arguments_are_refused() -> None:
    allowed = {"run_tests"}
    assert checked_call("run_tests", "x" * (MAX_TOOL_ARGUMENTS_CHARS + 1), allowed) is None
    assert checked_call("run_tests", "[" * 100_000 + "]" * 100_000, allowed) is None
    too_deep = '{"a": ' + "[" * 40 + "1" + "]" * 40 + "}"
    assert checked_call("run_tests", too_deep, allowed) is None
    assert checked_call("run_tests", "null", allowed) is None
    assert checked_call("run_tests", 42, allowed) is None
    assert checked_call("run_tests", None, allowed) is not None  # no arguments: {}


def test_a_flood_of_calls_is_cut_at_the_limit() -> None:
    calls = [raw("run_tests", "{}", f"c{i}") for i in range(MAX_TOOL_CALLS + 2)]
    answer = native_answer(message(*calls), "tool_calls", TOOLS)
    assert len(answer.tool_calls) == MAX_TOOL_CALLS
    assert answer.text.count("could not be used") == 2
