"""The message types: the design's fields suffice, ours are optional, errors are clear."""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from singularity.shared_queue import (
    QUEUES,
    ApprovalRequest,
    JobResult,
    LlmResult,
    dead_letter_queue,
    validate_queue_name,
)

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
