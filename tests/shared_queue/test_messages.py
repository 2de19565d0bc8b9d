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
