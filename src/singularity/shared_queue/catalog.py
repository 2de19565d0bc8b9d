"""The queues of the bus: who publishes, who consumes, what each carries.

This table is the access matrix: `db init` grants exactly what it says, and nothing more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

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
    TaskEvent,
    validate_queue_name,
)

__all__ = [
    "QUEUES",
    "REPLY_QUEUES",
    "QueueSpec",
    "dead_letter_queue",
    "instance_of",
    "instance_queues",
    "queue_spec",
    "reply_queue",
]

DLQ_SUFFIX = "_dlq"


@dataclass(frozen=True)
class QueueSpec:
    """One queue of the bus."""

    name: str
    publishers: tuple[Role, ...]
    consumer: Role
    message: type[BusMessage]

    @property
    def dead_letter(self) -> str:
        return dead_letter_queue(self.name)


QUEUES: tuple[QueueSpec, ...] = (
    # Genesis asks for model calls too: the mutations of its evolution runs.
    QueueSpec("llm_requests", (Role.SINGULARITY, Role.GENESIS), Role.NEXUS, LlmRequest),
    QueueSpec("llm_results", (Role.NEXUS,), Role.SINGULARITY, LlmResult),
    QueueSpec("genesis_llm_results", (Role.NEXUS,), Role.GENESIS, LlmResult),
    QueueSpec("approval_requests", (Role.SINGULARITY,), Role.NEXUS, ApprovalRequest),
    QueueSpec("approval_responses", (Role.NEXUS,), Role.SINGULARITY, ApprovalResponse),
    QueueSpec("question_requests", (Role.SINGULARITY,), Role.NEXUS, QuestionRequest),
    QueueSpec("question_responses", (Role.NEXUS,), Role.SINGULARITY, QuestionResponse),
    QueueSpec("job_requests", (Role.SINGULARITY,), Role.GENESIS, JobRequest),
    QueueSpec("job_results", (Role.GENESIS,), Role.SINGULARITY, JobResult),
    QueueSpec("experiment_requests", (Role.SINGULARITY,), Role.GENESIS, ExperimentRequest),
    QueueSpec("experiment_results", (Role.GENESIS,), Role.SINGULARITY, ExperimentResult),
    # Every instance's tasks, step by step: Nexus keeps them for its views of the fleet.
    QueueSpec("task_events", (Role.SINGULARITY,), Role.NEXUS, TaskEvent),
)

_BY_NAME = {spec.name: spec for spec in QUEUES}

# The queues that carry answers back to a Singularity instance: instance N > 1 has its own
# copy of each (`llm_results_2`), so that instances sharing one bus get only their own results.
REPLY_QUEUES: tuple[str, ...] = (
    "llm_results",
    "approval_responses",
    "question_responses",
    "job_results",
    "experiment_results",
)
_INSTANCE_QUEUE = re.compile(
    rf"^(?P<base>{'|'.join(REPLY_QUEUES)})_(?P<instance>[1-9][0-9]{{0,2}})$"  # instances 2-999
)


def queue_spec(name: str) -> QueueSpec | None:
    """The catalog entry of a queue (an instance's reply queue has its base queue's), or None
    for a queue outside the catalog."""
    match = _INSTANCE_QUEUE.match(name)
    if match is not None:
        return replace(_BY_NAME[match["base"]], name=name)
    return _BY_NAME.get(name)


def reply_queue(base: str, instance: int) -> str:
    """The queue on which Singularity instance `instance` receives `base`'s answers."""
    if base not in REPLY_QUEUES:
        raise ValueError(f"{base!r} is not a reply queue")
    return base if instance == 1 else validate_queue_name(f"{base}_{instance}")


def instance_queues(instance: int) -> tuple[QueueSpec, ...]:
    """The reply queues of an instance beyond the catalog's (none for instance 1)."""
    if instance == 1:
        return ()
    return tuple(replace(_BY_NAME[base], name=reply_queue(base, instance)) for base in REPLY_QUEUES)


def instance_of(queue: str) -> int | None:
    """The instance whose reply queue this is (1 for the catalog's), or None."""
    if queue in REPLY_QUEUES:
        return 1
    match = _INSTANCE_QUEUE.match(queue)
    return int(match["instance"]) if match else None


def dead_letter_queue(name: str) -> str:
    """The dead-letter queue that holds what `name`'s consumer could not handle."""
    return validate_queue_name(name + DLQ_SUFFIX)
