"""Turning a NATS body into a bus message, and remembering what waits for an answer."""

from __future__ import annotations

import json
import uuid

import pytest

from singularity.nats_bridge.forward import InvalidRequest, answer_body, error_body, prepare
from singularity.nats_bridge.pending import Pending
from singularity.nats_bridge.routes import ROUTES
from singularity.shared_queue import ApprovalRequest, LlmRequest, LlmResult

LLM, APPROVAL, QUESTION = ROUTES


def test_a_request_gets_a_fresh_request_id_and_the_bridge_reply_queue() -> None:
    body = {
        "agent_id": "a",
        "task_type": "classifier",
        "messages": [{"role": "user", "content": "hi"}],
    }
    body["request_id"] = "old-7"
    body["reply_to"] = "somewhere_else"
    prepared = prepare(LLM, json.dumps(body).encode(), "llm_results_901")
    assert isinstance(prepared.message, LlmRequest)
    assert prepared.message.request_id == prepared.request_id != "old-7"
    uuid.UUID(prepared.request_id)
    assert prepared.message.reply_to == "llm_results_901"
    assert prepared.caller_request_id == "old-7"


def test_an_approval_without_id_gets_one_and_one_with_id_keeps_it() -> None:
    body = {"file_path": "a.py", "diff": "+x", "description": None}
    prepared = prepare(APPROVAL, json.dumps(body).encode(), "approval_responses_901")
    assert isinstance(prepared.message, ApprovalRequest)
    assert str(prepared.message.id) == prepared.request_id
    assert prepared.caller_request_id is None
    ident = str(uuid.uuid4())
    kept = prepare(APPROVAL, json.dumps({**body, "id": ident}).encode(), "approval_responses_901")
    assert str(kept.message.id) == ident != kept.request_id


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "the body is not JSON"),
        (b"\xff\xfe", "the body is not JSON"),
        (b"", "the body is not JSON"),
        (b"[1, 2]", "the body must be a JSON object, not list"),
        (b'{"agent_id": "a", "task_type": "t", "messages": []}', "messages: List should have"),
        (b'{"task_type": "t", "messages": [{"role": "user"}]}', "agent_id: Field required"),
    ],
)
def test_a_bad_body_is_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        prepare(LLM, data, "llm_results_901")


def test_a_question_needs_a_question() -> None:
    with pytest.raises(InvalidRequest, match="question: Field required"):
        prepare(QUESTION, b'{"context": "x"}', "question_responses_901")


def test_replies_carry_the_caller_request_id_or_the_error() -> None:
    result = LlmResult(request_id="ours", result="yes", model="alpha")
    assert json.loads(answer_body(result, "old-7"))["request_id"] == "old-7"
    assert json.loads(answer_body(result, None))["request_id"] == "ours"
    assert json.loads(error_body("invalid_request", "why")) == {
        "error": {"code": "invalid_request", "message": "why"}
    }


def test_pending_entries_expire_after_the_timeout() -> None:
    now = [100.0]
    pending = Pending(10.0, clock=lambda: now[0])
    pending.add("r1", "llm.request", "_INBOX.1", None)
    now[0] = 105.0
    pending.add("r2", "llm.request", None, "old")
    assert pending.get("r1") is not None and len(pending) == 2
    now[0] = 110.0
    assert pending.get("r1") is None  # past its time even before the sweep
    assert [rid for rid, _ in pending.expire()] == ["r1"]
    assert pending.get("r2") is not None and len(pending) == 1
    pending.remove("r2")
    assert pending.get("r2") is None and len(pending) == 0
