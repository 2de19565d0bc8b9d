"""Asking the platform: `llm`, `approval`, `ask`, `run_code` and `experiment`.

Each call goes through the bus's one durable requester (`singularity.shared_queue.Requester`):
the request is recorded in the singularity database, published with a `request_id` and this
instance's `reply_to`, and resolves when the matching result arrives. A call made for a task's
step (`task_id` and `step`) is the same request every time it is made: after a restart, the
step asks again, finds its recorded request, and gets the answer that arrived meanwhile (or
waits for it) instead of asking twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from singularity.config import Settings
from singularity.errors import SingularityError
from singularity.orchestrator.flows import FLOWS, Kind
from singularity.orchestrator.ledger import TaskLedger, task_key
from singularity.orchestrator.store import SingularityStore
from singularity.shared_queue import (
    ApprovalResponse,
    ExperimentResult,
    JobResult,
    LlmResult,
    Publisher,
    QuestionResponse,
    Requester,
    RequestTimedOut,
    Route,
)

__all__ = ["LlmFailed", "PlatformClient", "RequestTimedOut"]

log = structlog.get_logger(__name__)


class LlmFailed(SingularityError):
    """Nexus answered with an error instead of a completion."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"the model call failed: {code}: {message}")
        self.code = code


class PlatformClient:
    """One Singularity instance's way of asking the other services, over the bus."""

    def __init__(
        self, store: SingularityStore, publisher: Publisher, settings: Settings, instance: int
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.settings = settings
        self.instance = instance
        routes = {
            flow.requests: Route(flow.reply_to(instance), flow.answerer) for flow in FLOWS.values()
        }
        # Every request of this instance, recorded in its database; a task's step asked
        # again (after a restart, say) is the request it recorded (see TaskLedger).
        self.requester = Requester(publisher.send, TaskLedger(store), routes)

    async def llm(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        agent_id: str,
        task_type: str,
        complexity: str | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        task_id: int | None = None,
        step: str | None = None,
        timeout_s: float | None = None,
    ) -> LlmResult:
        """A model call routed by Nexus; raises LlmFailed when Nexus answers with an error.

        With `tools` (OpenAI-style function specs) the answer may carry `tool_calls`."""
        body: dict[str, Any] = {
            "agent_id": agent_id,
            "task_type": task_type,
            "messages": list(messages),
        }
        if complexity is not None:
            body["complexity"] = complexity
        if tools:
            body["tools"] = list(tools)
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        raw = await self.request("llm", body, task_id=task_id, step=step, timeout_s=timeout_s)
        result = LlmResult.model_validate(raw)
        if result.error is not None:
            raise LlmFailed(result.error.code, result.error.message)
        return result

    async def approval(
        self,
        *,
        file_path: str,
        diff: str,
        description: str | None = None,
        agent_id: str | None = None,
        extra: dict[str, Any] | None = None,
        task_id: int | None = None,
        step: str | None = None,
        timeout_s: float | None = None,
    ) -> ApprovalResponse:
        """A human's decision on a change, through the Nexus web UI."""
        body = {"file_path": file_path, "diff": diff, "description": description, **(extra or {})}
        if agent_id is not None:
            body["agent_id"] = agent_id
        raw = await self.request(
            "approval", body, task_id=task_id, step=step, timeout_s=timeout_s, human=True
        )
        return ApprovalResponse.model_validate(raw)

    async def ask(
        self,
        question: str,
        *,
        context: Any = None,
        agent_id: str | None = None,
        task_id: int | None = None,
        step: str | None = None,
        timeout_s: float | None = None,
    ) -> str:
        """A human's answer to a question, through the Nexus web UI."""
        body: dict[str, Any] = {"question": question, "context": context}
        if agent_id is not None:
            body["agent_id"] = agent_id
        raw = await self.request(
            "question", body, task_id=task_id, step=step, timeout_s=timeout_s, human=True
        )
        return QuestionResponse.model_validate(raw).response

    async def run_code(
        self,
        code: str,
        language: str,
        *,
        mode: str | None = None,
        stdin: str | None = None,
        files: dict[str, str] | None = None,
        limits: dict[str, Any] | None = None,
        agent_id: str | None = None,
        task_id: int | None = None,
        step: str | None = None,
        timeout_s: float | None = None,
    ) -> JobResult:
        """Code run by Genesis in its sandbox."""
        body: dict[str, Any] = {"code": code, "language": language, "mode": mode, "stdin": stdin}
        body.update(files=files, limits=limits, agent_id=agent_id)
        raw = await self.request("job", body, task_id=task_id, step=step, timeout_s=timeout_s)
        return JobResult.model_validate(raw)

    async def run_in_workspace(
        self,
        workspace: Path,
        command: str,
        *,
        setup: str | bool | None = None,
        limits: dict[str, Any] | None = None,
        agent_id: str | None = None,
        task_id: int | None = None,
        step: str | None = None,
        timeout_s: float | None = None,
    ) -> JobResult:
        """`command` run by Genesis in a checkout of the directory `workspace` as it is now.

        The directory travels as a workspace snapshot (only the files the bus lacks are sent);
        `setup` chooses its environment as an experiment's does (None: the step it declares or
        its layout suggests; False: nothing installed; text: that step)."""
        published = await self.publisher.publish_workspace(workspace)
        body: dict[str, Any] = {"workspace": published.id, "command": command}
        body.update(setup=None if setup is True else setup, limits=limits, agent_id=agent_id)
        raw = await self.request("job", body, task_id=task_id, step=step, timeout_s=timeout_s)
        return JobResult.model_validate(raw)

    async def experiment(
        self,
        *,
        repo: str,
        diff: str,
        test_command: str,
        junit_path: str | None = None,
        limits: dict[str, Any] | None = None,
        agent_id: str | None = None,
        task_id: int | None = None,
        step: str | None = None,
        timeout_s: float | None = None,
    ) -> ExperimentResult:
        """A diff tried by Genesis on a copy of `repo`, against its tests.

        The repository travels as a workspace snapshot in the bus (its working tree, uncommitted
        changes included), so any Genesis worker on any host can run it.
        """
        published = await self.publisher.publish_workspace(Path(repo))
        log.info(
            "workspace_published",
            workspace=published.id,
            blobs_sent=published.blobs_sent,
            bytes_sent=published.bytes_sent,
        )
        body: dict[str, Any] = {"workspace": published.id, "diff": diff}
        body["test_command"] = test_command
        body.update(junit_path=junit_path, limits=limits, agent_id=agent_id)
        raw = await self.request(
            "experiment", body, task_id=task_id, step=step, timeout_s=timeout_s
        )
        return ExperimentResult.model_validate(raw)

    async def request(
        self,
        kind: Kind,
        body: dict[str, Any],
        *,
        task_id: int | None = None,
        step: str | None = None,
        timeout_s: float | None = None,
        human: bool = False,
    ) -> dict[str, Any]:
        """Record, send and await one request; the raw result body."""
        flow = FLOWS[kind]
        timeout = timeout_s if timeout_s is not None else flow.timeout_s(self.settings)
        if (task_id is None) != (step is None):
            raise ValueError("a task's request names both its task_id and its step")
        request_id = str(uuid.uuid4())
        message = {**body, "request_id": request_id}
        if flow.id_field:
            message["id"] = request_id
        if human:
            deadline = datetime.now(UTC) + timedelta(seconds=timeout)
            message["deadline"] = deadline.isoformat()
        key = task_key(task_id, step) if task_id is not None and step is not None else None
        return await self.requester.ask(flow.requests, message, key=key, timeout_s=timeout)
