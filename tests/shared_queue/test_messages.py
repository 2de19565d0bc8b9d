"""The message types: the design's fields suffice, ours are optional, errors are clear."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from pydantic import ValidationError

from singularity.shared_queue import (
    QUEUES,
    ApprovalRequest,
    BusMessage,
    JobRequest,
    JobResult,
    LlmRequest,
    LlmResult,
    QuestionRequest,
    dead_letter_queue,
    validate_queue_name,
)
from singularity.shared_queue.messages import MAX_KEY_LENGTH

DESIGN_MESSAGES = {
    "llm_requests": {
        "agent_id": "a1",
        "task_type": "coder",
        "messages": [{"role": "user", "content": "hi"}],
    },
    "llm_results": {"request_id": "r1", "result": "hello", "model": "gpt-4o-mini"},
    # Ours: Genesis's evolution runs get their answers here.
    "genesis_llm_results": {"request_id": "r1", "result": "hello", "model": "gpt-4o-mini"},
    "approval_requests": {
        "id": str(uuid.uuid4()),
        "file_path": "a.py",
        "diff": "-a\n+b",
        "description": "rename",
    },
    "approval_responses": {"request_id": "r1", "approved": False, "reason": "too risky"},
    "question_requests": {
        "id": str(uuid.uuid4()),
        "question": "Which DB?",
        "context": {"repo": "x"},
    },
    "question_responses": {"request_id": "r1", "response": "PostgreSQL"},
    "job_requests": {"id": "j1", "code": "print(1)", "language": "python"},
    "job_results": {"request_id": "j1", "output": "1\n", "error": None},
    # The experiments' queues are ours; these are their required fields.
    "experiment_requests": {
        "id": "e1",
        "repo": "/srv/repo",
        "diff": "--- a/x\n+++ b/x\n",
        "test_command": "make test",
    },
    "experiment_results": {"request_id": "e1", "status": "completed"},
    "task_events": {
        "instance": 1,
        "task_id": 4,
        "event_id": 9,
        "at": "2026-12-07T10:00:00Z",
        "state": "working",
        "message": "model alpha: read_file",
    },
}


@pytest.mark.parametrize("spec", QUEUES, ids=lambda s: s.name)
def test_the_design_fields_alone_make_a_valid_message(spec: object) -> None:
    body = DESIGN_MESSAGES[spec.name]  # type: ignore[attr-defined]
    message = spec.message.model_validate_json(json.dumps(body))  # type: ignore[attr-defined]
    # Sent on again, nothing the sender said is lost.
    assert (
        json.loads(message.to_json()).items()
        >= {k: v for k, v in body.items() if v is not None}.items()
    )


@pytest.mark.parametrize("spec", QUEUES, ids=lambda s: s.name)
def test_each_design_field_is_required(spec: object) -> None:
    body = DESIGN_MESSAGES[spec.name]  # type: ignore[attr-defined]
    nullable = {"description", "reason", "context", "error"}
    for field in set(body) - nullable:
        with pytest.raises(ValidationError, match=field):
            spec.message.model_validate({k: v for k, v in body.items() if k != field})  # type: ignore[attr-defined]


def test_unknown_fields_are_kept() -> None:
    result = JobResult.model_validate({"request_id": "j", "output": "", "exit_code": 3})
    assert json.loads(result.to_json())["exit_code"] == 3


def test_an_llm_result_has_an_answer_or_an_error() -> None:
    with pytest.raises(ValidationError, match="needs `result` and `model`, or an `error`"):
        LlmResult.model_validate({"request_id": "r"})
    failed = LlmResult.model_validate(
        {"request_id": "r", "error": {"code": "TIMEOUT", "message": "no answer in 60 s"}}
    )
    assert failed.error is not None and failed.error.code == "TIMEOUT"


def test_an_approval_id_must_be_a_uuid_for_the_nexus_tables() -> None:
    with pytest.raises(ValidationError, match="id"):
        ApprovalRequest.model_validate({"id": "not-a-uuid", "file_path": "a", "diff": ""})


def test_our_optional_fields_are_validated_too() -> None:
    with pytest.raises(ValidationError, match="reply_to"):
        ApprovalRequest.model_validate(
            {**DESIGN_MESSAGES["approval_requests"], "reply_to": "Not A Queue"}
        )


def test_the_request_key_is_request_id_then_the_design_id() -> None:
    body = DESIGN_MESSAGES["approval_requests"]
    assert ApprovalRequest.model_validate(body).idempotency_key() == body["id"]
    with_id = ApprovalRequest.model_validate({**body, "request_id": "r-9"})
    assert with_id.idempotency_key() == "r-9"


def test_queue_names() -> None:
    assert validate_queue_name("llm_results_2") == "llm_results_2"
    assert dead_letter_queue("job_requests") == "job_requests_dlq"
    for bad in ("", "Upper", "1starts_with_digit", "x" * 48, "semi;colon"):
        with pytest.raises(ValueError, match="not a valid queue name"):
            validate_queue_name(bad)


def test_request_keys_and_agent_ids_are_short_enough_to_index() -> None:
    # Found by tests/shared_queue/test_fuzz_messages.py: a 3000-character request_id or
    # agent_id passed validation, then failed its handler on every delivery (PostgreSQL
    # cannot index it), until it was dead-lettered minutes later.
    long = "k" * (MAX_KEY_LENGTH + 1)
    llm = DESIGN_MESSAGES["llm_requests"]
    cases: list[tuple[type[BusMessage], dict[str, object], str]] = [
        (LlmRequest, {**llm, "request_id": long}, "request_id"),
        (LlmRequest, {**llm, "agent_id": long}, "agent_id"),
        (ApprovalRequest, {**DESIGN_MESSAGES["approval_requests"], "agent_id": long}, "agent_id"),
        (JobRequest, {"id": long, "code": "print(1)", "language": "python"}, "id"),
        (JobResult, {"request_id": long, "output": ""}, "request_id"),
    ]
    for model, body, field in cases:
        with pytest.raises(ValidationError, match=f"{field}\n.*at most {MAX_KEY_LENGTH}"):
            model.model_validate(body)
    assert JobRequest.model_validate(
        {"id": "k" * MAX_KEY_LENGTH, "code": "", "language": "python"}
    ).id


def test_token_counts_fit_an_integer_column() -> None:
    # Found by the fuzz tests: 2**31 completion tokens crashed Singularity's llm_calls insert.
    usage = {"prompt_tokens": 1, "completion_tokens": 2**31}
    with pytest.raises(ValidationError, match="completion_tokens"):
        LlmResult.model_validate({"request_id": "r", "result": "x", "model": "m", "usage": usage})
    usage["completion_tokens"] = 2**31 - 1
    LlmResult.model_validate({"request_id": "r", "result": "x", "model": "m", "usage": usage})


@pytest.mark.parametrize(
    "deadline",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00"],
)
def test_a_deadline_must_be_readable_back_in_any_time_zone(deadline: str) -> None:
    # Found by the fuzz tests: such a deadline was stored, and from then on every list of
    # pending approvals (the API, the web UI, the expiry sweeper) failed to read it back.
    body = {**DESIGN_MESSAGES["approval_requests"], "deadline": deadline}
    with pytest.raises(ValidationError, match=r"deadline\n.*between the years 2 and 9998"):
        ApprovalRequest.model_validate(body)
    question = {**DESIGN_MESSAGES["question_requests"], "deadline": deadline}
    with pytest.raises(ValidationError, match="deadline"):
        QuestionRequest.model_validate(question)
    assert ApprovalRequest.model_validate({**body, "deadline": "2030-01-01T00:00:00Z"}).deadline


@pytest.mark.parametrize(
    ("model", "body", "where"),
    [
        (JobResult, '{"request_id": "r", "output": "", "cpu_ms": 1e400}', "cpu_ms"),
        (JobResult, '{"request_id": "r", "output": "", "x": [1, {"y": -1e400}]}', "x.1.y"),
        (
            QuestionRequest,
            '{"id": "6f1c0a52-3c35-4d5e-9a51-2f4f8fb0e0a1", "question": "q", "context": [1e999]}',
            "context.0",
        ),
    ],
)
def test_a_number_beyond_a_float_makes_a_message_invalid(
    model: type[BusMessage], body: str, where: str
) -> None:
    # Found by tests/shared_queue/test_fuzz_messages.py: 1e400 reads as infinity, which cannot
    # be written back as JSON, so recording the message failed on every delivery.
    with pytest.raises(ValidationError, match=re.escape(f"{where}: the number is beyond")):
        model.model_validate_json(body)
    assert model.model_validate_json(body.replace("e400", "e300").replace("e999", "e300"))


# -- tool calling ---------------------------------------------------------------------------

SEED_REQUEST = DESIGN_MESSAGES["llm_requests"]


def tool(name: str = "read_file", **function: object) -> dict[str, object]:
    return {"type": "function", "function": {"name": name, **function}}


def test_a_request_may_carry_tools_tool_choice_and_a_response_format() -> None:
    request = LlmRequest.model_validate(
        {
            **SEED_REQUEST,
            "tools": [
                tool(description="Read a file.", parameters={"type": "object"}),
                tool("run_tests"),
            ],
            "tool_choice": {"type": "function", "function": {"name": "run_tests"}},
            "response_format": {"type": "json_object"},
        }
    )
    assert request.tools is not None and request.tools[0].function.name == "read_file"
    body = json.loads(request.to_json())
    assert body["tools"][1] == tool("run_tests")
    assert body["tool_choice"] == {"type": "function", "function": {"name": "run_tests"}}
    for choice in ("auto", "none", "required"):
        LlmRequest.model_validate({**SEED_REQUEST, "tools": [tool()], "tool_choice": choice})


def test_a_conversation_may_carry_calls_and_their_results() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "a"}'},
    }
    request = LlmRequest.model_validate(
        {
            **SEED_REQUEST,
            "messages": [
                {"role": "user", "content": "read a"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "name": "read_file", "content": "x"},
            ],
        }
    )
    body = json.loads(request.to_json())
    assert body["messages"][1] == {"role": "assistant", "tool_calls": [call]}
    assert body["messages"][2]["tool_call_id"] == "call_1"


def test_a_result_carries_tool_calls_and_its_text_stays_a_string() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "run_tests", "arguments": "{}"}}
    result = LlmResult.model_validate(
        {
            "request_id": "r",
            "result": "",
            "model": "m",
            "tool_calls": [call],
            "finish_reason": "tool_calls",
        }
    )
    assert json.loads(result.to_json())["tool_calls"] == [call]
    with pytest.raises(ValidationError):
        LlmResult.model_validate({"request_id": "r", "model": "m", "tool_calls": [call]})


def test_an_unknown_cost_is_said_as_null() -> None:
    result = LlmResult(request_id="r", result="", model="m", cost_unknown=True)
    assert json.loads(result.to_json())["cost_usd"] is None
    assert "cost_usd" not in json.loads(
        LlmResult(request_id="r", error={"code": "X", "message": ""}).to_json()
    )


HOSTILE_TOOLS = {
    "too many tools": (
        {"tools": [tool(f"t{i}") for i in range(129)]},
        "at most 128",
    ),
    "a name with a space": ({"tools": [tool("read file")]}, "should match pattern"),
    "a name too long": ({"tools": [tool("x" * 65)]}, "should match pattern"),
    "an empty name": ({"tools": [tool("")]}, "should match pattern"),
    "a schema too large": (
        {"tools": [tool(parameters={"description": "x" * 70_000})]},
        "characters of JSON",
    ),
    "a schema too deep": (
        {"tools": [tool(parameters=json.loads('{"a":' * 40 + "1" + "}" * 40))]},
        "nests deeper",
    ),
    "a tool that is not a function": (
        {"tools": [{"type": "code_interpreter", "function": {"name": "x"}}]},
        "'function'",
    ),
    "a name given twice": ({"tools": [tool(), tool()]}, "named twice"),
    "a choice of a tool not offered": (
        {"tools": [tool()], "tool_choice": {"type": "function", "function": {"name": "rm"}}},
        "not among the tools",
    ),
    "a required choice without tools": ({"tool_choice": "required"}, "has no tools"),
    "an unknown choice": ({"tools": [tool()], "tool_choice": "sometimes"}, "tool_choice"),
    "a response format too large": (
        {"response_format": {"schema": "x" * 70_000}},
        "characters of JSON",
    ),
    "a call with a bad name in the conversation": (
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "a b", "arguments": ""},
                        }
                    ],
                }
            ]
        },
        "should match pattern",
    ),
}


@pytest.mark.parametrize(("fields", "reason"), HOSTILE_TOOLS.values(), ids=HOSTILE_TOOLS.keys())
def test_hostile_tools_are_refused_with_a_clear_reason(
    fields: dict[str, object], reason: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        LlmRequest.model_validate({**SEED_REQUEST, **fields})
    assert reason in str(refused.value)


def test_the_seed_request_shape_has_no_tool_fields() -> None:
    request = LlmRequest.model_validate(SEED_REQUEST)
    assert (request.tools, request.tool_choice, request.response_format) == (None, None, None)
    assert set(json.loads(request.to_json())) == {"schema_version", *SEED_REQUEST}
