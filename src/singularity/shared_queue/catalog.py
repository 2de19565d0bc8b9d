"""The queues of the bus: who publishes, who consumes, what each carries.

This table is the access matrix: `db init` grants exactly what it says, and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

from singularity.postgres.topology import Role
from singularity.shared_queue.messages import (
    ApprovalRequest,
    ApprovalResponse,
    BusMessage,
    ExperimentRequest,
    ExperimentResult,
    JobRequest,
    JobResult,
    LlmRequest,
    LlmResult,
    QuestionRequest,
    QuestionResponse,
    validate_queue_name,
)

__all__ = ["QUEUES", "QueueSpec", "dead_letter_queue", "queue_spec"]

DLQ_SUFFIX = "_dlq"


@dataclass(frozen=True)
class QueueSpec:
    """One queue of the bus."""

    name: str
    publisher: Role
    consumer: Role
    message: type[BusMessage]

    @property
    def dead_letter(self) -> str:
        return dead_letter_queue(self.name)


QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec("llm_requests", Role.SINGULARITY, Role.NEXUS, LlmRequest),
    QueueSpec("llm_results", Role.NEXUS, Role.SINGULARITY, LlmResult),
    QueueSpec("approval_requests", Role.SINGULARITY, Role.NEXUS, ApprovalRequest),
    QueueSpec("approval_responses", Role.NEXUS, Role.SINGULARITY, ApprovalResponse),
    QueueSpec("question_requests", Role.SINGULARITY, Role.NEXUS, QuestionRequest),
    QueueSpec("question_responses", Role.NEXUS, Role.SINGULARITY, QuestionResponse),
    QueueSpec("job_requests", Role.SINGULARITY, Role.GENESIS, JobRequest),
    QueueSpec("job_results", Role.GENESIS, Role.SINGULARITY, JobResult),
    QueueSpec("experiment_requests", Role.SINGULARITY, Role.GENESIS, ExperimentRequest),
    QueueSpec("experiment_results", Role.GENESIS, Role.SINGULARITY, ExperimentResult),
)

_BY_NAME = {spec.name: spec for spec in QUEUES}


def queue_spec(name: str) -> QueueSpec | None:
    """The catalog entry of a queue, or None for a queue outside the catalog."""
    return _BY_NAME.get(name)


def dead_letter_queue(name: str) -> str:
    """The dead-letter queue that holds what `name`'s consumer could not handle."""
    return validate_queue_name(name + DLQ_SUFFIX)
