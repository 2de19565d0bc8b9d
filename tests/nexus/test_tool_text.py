"""The text protocol: tools and earlier calls written as text, calls read back from answers;
hostile answers stay text, never a crash."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from singularity.nexus.tool_calls import ToolSet
from singularity.nexus.tool_text import CLOSE, OPEN, parse_answer, render_messages, uses_tools
from singularity.shared_queue.messages import (
    MAX_TOOL_ARGUMENTS_CHARS,
    MAX_TOOL_CALLS,
    NamedToolChoice,
    Tool,
)

READ = Tool.model_validate(
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file of the repository.",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
        },
    }
)
RUN = Tool.model_validate({"type": "function", "function": {"name": "run_tests"}})
TOOLS = ToolSet((READ, RUN))


def block(name: Any, arguments: Any = None, *, raw: str | None = None) -> str:
    body = raw if raw is not None else json.dumps({"name": name, "arguments": arguments or {}})
    return f"{OPEN}\n{body}\n{CLOSE}"


# -- rendering ------------------------------------------------------------------------------


def test_the_tools_and_the_protocol_join_the_system_message() -> None:
    rendered = render_messages(
        [{"role": "system", "content": "You fix bugs."}, {"role": "user", "content": "go"}],
        TOOLS,
    )
    system = rendered[0]["content"]
    assert system.startswith("You fix bugs.\n\n")
    assert OPEN in system and CLOSE in system
    described = [json.loads(line) for line in system.splitlines() if line.startswith("{")]
    assert [d["name"] for d in described if "parameters" in d or "description" in d] == [
        "read_file"
    ]
    assert {"name": "run_tests"} in described
    assert rendered[1] == {"role": "user", "content": "go"}


def test_a_conversation_without_a_system_message_gets_one() -> None:
    rendered = render_messages([{"role": "user", "content": "go"}], TOOLS)
    assert [m["role"] for m in rendered] == ["system", "user"]


@pytest.mark.parametrize(
    ("choice", "said"),
    [
        ("required", "You must call at least one tool now."),
        (
            NamedToolChoice.model_validate({"type": "function", "function": {"name": "run_tests"}}),
            "You must call the tool run_tests now.",
        ),
    ],
)
def test_a_forced_choice_is_said(choice: Any, said: str) -> None:
    rendered = render_messages([{"role": "user", "content": "go"}], ToolSet((READ, RUN), choice))
    assert rendered[0]["content"].endswith(said)


def test_tool_choice_none_offers_no_tools_and_reads_no_calls() -> None:
    tools = ToolSet((READ,), "none")
    assert render_messages([{"role": "user", "content": "go"}], tools) == [
        {"role": "user", "content": "go"}
    ]
    answer = parse_answer(block("read_file", {"path": "a"}), tools, "stop")
    assert answer.tool_calls == () and OPEN in answer.text


def test_earlier_calls_and_their_results_are_written_as_text() -> None:
    messages = [
        {"role": "user", "content": "read it"},
        {
            "role": "assistant",
            "content": "Reading.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "print(1)"},
    ]
    rendered = render_messages(messages, TOOLS)[1:]
    assert rendered[1]["role"] == "assistant" and "tool_calls" not in rendered[1]
    assert rendered[1]["content"] == "Reading.\n" + block("read_file", {"path": "a.py"})
    assert rendered[2] == {
        "role": "user",
        "content": '<tool_result name="read_file" id="call_1">\nprint(1)\n</tool_result>',
    }
    assert uses_tools(messages, None) and not uses_tools(messages[:1], None)


def test_an_earlier_call_renders_back_into_the_same_call() -> None:
    """What the model wrote, rendered again for the next turn, reads as the same call."""
    first = parse_answer(block("read_file", {"path": "x"}), TOOLS, "stop")
    again = render_messages(
        [
            {
                "role": "assistant",
                "tool_calls": [c.model_dump() for c in first.tool_calls],
            }
        ],
        None,
    )
    second = parse_answer(again[0]["content"], TOOLS, "stop")
    assert [c.function for c in second.tool_calls] == [c.function for c in first.tool_calls]


# -- parsing --------------------------------------------------------------------------------


def test_calls_are_read_out_and_the_text_around_them_kept() -> None:
    text = "Let me look.\n" + block("read_file", {"path": "a"}) + "\n" + block("run_tests")
    answer = parse_answer(text, TOOLS, "stop")
    assert answer.text == "Let me look."
    assert answer.finish_reason == "tool_calls"
    assert [(c.function.name, json.loads(c.function.arguments)) for c in answer.tool_calls] == [
        ("read_file", {"path": "a"}),
        ("run_tests", {}),
    ]
    assert len({c.id for c in answer.tool_calls}) == 2


def test_a_plain_answer_is_left_exactly_as_written() -> None:
    text = "  No tool needed.\n\n\n\nDone.  "
    answer = parse_answer(text, TOOLS, "length")
    assert (answer.text, answer.tool_calls, answer.finish_reason) == (text, (), "length")


def test_a_block_fenced_as_json_inside_its_tags_is_a_call() -> None:
    body = '```json\n{"name": "run_tests", "arguments": {}}\n```'
    answer = parse_answer(block(None, raw=body), TOOLS, "stop")
    assert [c.function.name for c in answer.tool_calls] == ["run_tests"]


def test_arguments_given_as_a_json_string_are_accepted() -> None:
    raw = json.dumps({"name": "read_file", "arguments": '{"path": "a"}'})
    answer = parse_answer(block(None, raw=raw), TOOLS, "stop")
    assert answer.tool_calls[0].function.arguments == '{"path": "a"}'


def test_a_named_choice_allows_only_that_tool() -> None:
    choice = NamedToolChoice.model_validate({"type": "function", "function": {"name": "run_tests"}})
    text = block("read_file", {"path": "a"}) + "\n" + block("run_tests")
    answer = parse_answer(text, ToolSet((READ, RUN), choice), "stop")
    assert [c.function.name for c in answer.tool_calls] == ["run_tests"]
    assert '"read_file"' in answer.text


HOSTILE = {
    "not JSON": block(None, raw="{name: read_file"),
    "JSON but not an object": block(None, raw='["read_file"]'),
    "no name": block(None, raw='{"arguments": {}}'),
    "a name that is not a string": block(None, raw='{"name": 7, "arguments": {}}'),
    "an unknown tool": block("delete_everything", {}),
    "a name the pattern refuses": block("read file; rm -rf /", {}),
    "arguments not an object": block("read_file", [1, 2]),
    "arguments a string that is not JSON": block(
        None, raw=json.dumps({"name": "read_file", "arguments": "{oops"})
    ),
    "arguments nested too deep": block("read_file", json.loads('{"a":' * 40 + "1" + "}" * 40)),
    "arguments nested beyond Python's recursion": block(
        None, raw='{"name": "read_file", "arguments": ' + "[" * 100_000 + "]" * 100_000 + "}"
    ),
    "arguments too large": block("read_file", {"x": "y" * (MAX_TOOL_ARGUMENTS_CHARS + 1)}),
    "a block never closed": f"{OPEN}\n" + json.dumps({"name": "run_tests", "arguments": {}}),
    "a block inside a code fence": "Write:\n```\n" + block("run_tests") + "\n```",
    "a block mid-sentence": "I would write " + block("run_tests").replace("\n", " "),
    "a closing tag alone": f"{CLOSE}\n{CLOSE}",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_what_is_not_a_call_stays_text(text: str) -> None:
    answer = parse_answer(text, TOOLS, "stop")
    assert answer.tool_calls == ()
    assert answer.text == text
    assert answer.finish_reason == "stop"


def test_a_good_call_beside_a_bad_one_is_read_and_the_bad_one_kept() -> None:
    bad = block("delete_everything", {})
    answer = parse_answer(bad + "\n" + block("run_tests"), TOOLS, "stop")
    assert [c.function.name for c in answer.tool_calls] == ["run_tests"]
    assert answer.text == bad


def test_calls_beyond_the_limit_stay_text() -> None:
    text = "\n".join(block("run_tests") for _ in range(MAX_TOOL_CALLS + 3))
    answer = parse_answer(text, TOOLS, "stop")
    assert len(answer.tool_calls) == MAX_TOOL_CALLS
    assert answer.text.count(OPEN) == 3


def test_many_openings_without_a_closing_are_read_in_linear_time() -> None:
    """An answer of unclosed openings (or of openings before one far closing) is not a
    quadratic scan."""
    unclosed = (OPEN + "\n") * 200_000
    one_close = unclosed + CLOSE
    started = time.perf_counter()
    for text in (unclosed, one_close, ("```\n" + OPEN + "\n") * 50_000):
        assert parse_answer(text, TOOLS, "stop").tool_calls == ()
    assert time.perf_counter() - started < 5


@given(st.text(alphabet=st.sampled_from(list('<>/_{}[]":, \n`toolcalreunsfi')), max_size=400))
def test_any_text_parses_without_error(text: str) -> None:
    answer = parse_answer(text, TOOLS, "stop")
    assert all(c.function.name in TOOLS.allowed for c in answer.tool_calls)
