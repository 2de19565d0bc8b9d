"""What each step of a task sends to the model, and how its answer is read.

Prompts come from the agent's files (`agents.py`); this module only fills them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from singularity.orchestrator.agents import AgentKind, render
from singularity.orchestrator.context import RepoContext, format_files, gather_context

__all__ = ["Prompts", "experiment_summary", "knowledge_text", "task_context"]

# Bounds of what a task reads from its repository into a prompt.
MAX_FILE_BYTES = 64_000
MAX_TOTAL_BYTES = 256_000


def task_context(repo: Path, description: str, extra: Sequence[str] = ()) -> RepoContext:
    """The repository's layout and the files the task names (and the plan selected)."""
    return gather_context(
        repo,
        description,
        extra_paths=extra,
        max_file_bytes=MAX_FILE_BYTES,
        max_total_bytes=MAX_TOTAL_BYTES,
    )


def knowledge_text(hits: Sequence[dict[str, Any]]) -> str:
    """Knowledge artifacts as prompt text."""
    if not hits:
        return "(no matching knowledge artifacts)"
    parts = [f"- [{h['artifact_type']}] {h['artifact_id']}: {h['text']}" for h in hits]
    return "\n".join(parts)


def experiment_summary(experiment: dict[str, Any]) -> str:
    """The sandbox's verdict on a diff, for the reviewer and the model, with its warnings.

    It says what the candidate's counts rest on: the diff's own code can print a runner's
    output, so a reviewer must see when a verdict rests on nothing else.
    """
    if experiment.get("error"):
        return f"{experiment.get('status')}: {experiment['error']}"
    rate = experiment.get("success_rate")
    shown = "unknown" if rate is None else f"{rate:.0%}"
    candidate = experiment.get("candidate") or {}
    basis = experiment.get("basis") or candidate.get("basis") or "unknown"
    lines = [
        f"tests: {experiment.get('status')}, success rate {shown}, regression "
        f"{experiment.get('regression')}, recommendation {experiment.get('recommendation')} "
        f"(counts from the candidate's {basis}, exit status {candidate.get('exit_code')})"
    ]
    lines += [f"WARNING: {warning}" for warning in _warnings(experiment)]
    return "\n".join(lines)


def _warnings(experiment: dict[str, Any]) -> list[str]:
    """The outcome's warnings, or its runs' own when the answer did not carry them."""
    if "warnings" in experiment:
        return [str(warning) for warning in experiment["warnings"]]
    return [
        f"{phase}: {warning}"
        for phase in ("baseline", "candidate")
        for warning in (experiment.get(phase) or {}).get("warnings", [])
    ]


class Prompts:
    """The chat messages of one agent's steps."""

    def __init__(self, agent: AgentKind, description: str) -> None:
        self.agent = agent
        self.description = description

    def messages(
        self, prompt: str, context: RepoContext, knowledge: str, **values: str
    ) -> list[dict[str, Any]]:
        """The system message and `prompt` filled with the task's context and `values`."""
        user = render(
            self.agent.prompts[prompt],
            description=self.description,
            layout=context.layout,
            files=format_files(context.files),
            knowledge=knowledge,
            **values,
        )
        system = render(self.agent.prompts["system"])
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]
