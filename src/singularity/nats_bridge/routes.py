"""The old system's three subjects and where each goes on the bus."""

from __future__ import annotations

from dataclasses import dataclass

from singularity.shared_queue import (
    ApprovalRequest,
    ApprovalResponse,
    BusMessage,
    LlmRequest,
    LlmResult,
    QuestionRequest,
    QuestionResponse,
)
from singularity.shared_queue.catalog import reply_queue

__all__ = ["QUEUE_GROUP", "ROUTES", "Route"]

# Every bridge joins this queue group, so that NATS hands each request to one of them.
QUEUE_GROUP = "singularity-bridge"


@dataclass(frozen=True)
class Route:
    """One NATS subject: the queue its requests go to and the queue their answers come on."""

    subject: str
    requests: str
    results: str
    request: type[BusMessage]
    result: type[BusMessage]
    # The design's `id` (approvals and questions): filled in when the old system left it out.
    id_field: bool

    def reply_to(self, instance: int) -> str:
        return reply_queue(self.results, instance)


ROUTES: tuple[Route, ...] = (
    Route("llm.request", "llm_requests", "llm_results", LlmRequest, LlmResult, False),
    Route(
        "approval.request",
        "approval_requests",
        "approval_responses",
        ApprovalRequest,
        ApprovalResponse,
        True,
    ),
    Route(
        "question.ask",
        "question_requests",
        "question_responses",
        QuestionRequest,
        QuestionResponse,
        True,
    ),
)
