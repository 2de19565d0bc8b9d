"""The analytics report and the learned patterns, as typed models (also their JSON form)."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict

__all__ = [
    "AnalyticsReport",
    "ApprovalRow",
    "JobRow",
    "LibraryRow",
    "LlmDay",
    "LlmRow",
    "LlmSection",
    "ModelRow",
    "Patterns",
]


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class LlmRow(_Row):
    """LLM requests of one task type answered at one tier by one model ("-": none yet/error)."""

    task_type: str
    tier: str
    model: str
    requests: int
    answered: int
    errors: int
    error_rate: float | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cost_unknown: int


class LlmDay(_Row):
    """LLM requests of one UTC day, of one task type (None: all task types)."""

    day: date
    task_type: str | None = None
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class LlmSection(_Row):
    rows: list[LlmRow]
    days: list[LlmDay]  # every day of the window, zeros included
    daily: list[LlmDay]  # per task type, days with requests only


class ApprovalRow(_Row):
    """Approval requests of one agent, and how fast humans decided them."""

    agent_id: str
    requests: int
    decided: int
    approved: int
    approval_rate: float | None
    p50_s: float | None
    p90_s: float | None


class JobRow(_Row):
    """Code runs of one language."""

    language: str
    runs: int
    completed: int
    succeeded: int
    success_rate: float | None
    p50_wall_ms: float | None
    p90_wall_ms: float | None


class AnalyticsReport(_Row):
    """What the bus's archives say about the last `since_days` days."""

    since_days: int
    since: datetime
    until: datetime
    archives: list[str]
    llm: LlmSection
    approvals: list[ApprovalRow]
    jobs: list[JobRow]


class ModelRow(_Row):
    """How the changes that one model's answers produced, for one task type, fared."""

    task_type: str
    model: str
    proposals: int
    decided: int
    approved: int
    tests_passed: int
    approved_and_passing: int
    rate: float | None


class LibraryRow(_Row):
    """A library seen in executed code of one language."""

    language: str
    library: str
    jobs: int
    first_seen_at: datetime
    last_seen_at: datetime


class Patterns(_Row):
    """What learning has gathered so far."""

    models: list[ModelRow]
    libraries: list[LibraryRow]
