"""The five things Singularity asks the platform for: where each request goes, where its
answer comes back, and who answers it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from singularity.config import Settings
from singularity.shared_queue import (
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
)
from singularity.shared_queue.catalog import reply_queue

__all__ = ["FLOWS", "Flow", "Kind"]

Kind = Literal["llm", "approval", "question", "job", "experiment"]


@dataclass(frozen=True)
class Flow:
    kind: Kind
    requests: str
    results: str
    request: type[BusMessage]
    result: type[BusMessage]
    answerer: str  # who answers, for the error that says why nothing came back
    timeout_setting: str
    # The design's `id` field: a UUID for the human flows, any text for code runs.
    id_field: bool = True

    def reply_to(self, instance: int) -> str:
        return reply_queue(self.results, instance)

    def timeout_s(self, settings: Settings) -> float:
        return float(getattr(settings, self.timeout_setting))


FLOWS: dict[Kind, Flow] = {
    "llm": Flow(
        "llm",
        "llm_requests",
        "llm_results",
        LlmRequest,
        LlmResult,
        "Nexus (`singularity run nexus`) with a model configured",
        "singularity_llm_timeout_s",
        id_field=False,
    ),
    "approval": Flow(
        "approval",
        "approval_requests",
        "approval_responses",
        ApprovalRequest,
        ApprovalResponse,
        "a reviewer in the Nexus web UI (`singularity hitl`)",
        "singularity_human_timeout_s",
    ),
    "question": Flow(
        "question",
        "question_requests",
        "question_responses",
        QuestionRequest,
        QuestionResponse,
        "a reviewer in the Nexus web UI (`singularity hitl`)",
        "singularity_human_timeout_s",
    ),
    "job": Flow(
        "job",
        "job_requests",
        "job_results",
        JobRequest,
        JobResult,
        "a Genesis worker (`singularity run genesis`)",
        "singularity_job_timeout_s",
    ),
    "experiment": Flow(
        "experiment",
        "experiment_requests",
        "experiment_results",
        ExperimentRequest,
        ExperimentResult,
        "a Genesis worker (`singularity run genesis`)",
        "singularity_job_timeout_s",
    ),
}
