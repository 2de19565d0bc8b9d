"""The agent loop: the model reads, searches, edits and runs in the task's workspace, again and
again, until the tests pass and it finishes, or a budget stops it.

Each turn is one model call (through Nexus, with the tools' specs) and the tool calls it
answers with, each run and its output sent back as a `tool` message. Besides the workspace's
file tools (`tools.py`) the model has `run_tests` and `run_command` (Genesis runs them in a
checkout of the workspace as it is now, with its environment, see `PlatformClient.
run_in_workspace`), `ask_human` (a question in the Nexus web UI) and `finish`, which runs the
tests once more and ends the loop only when they pass.

Every step is recorded as the task's trajectory (`task_trajectory`), under a key made of the
revision, the turn and the call. A loop resumed after a crash runs the same code: each model
call is a task step recorded by the requester (asked again, it gets its recorded answer, never
paying twice), and each tool call that has an output recorded takes that output instead of
running again. The messages are rebuilt the same way, turn by turn.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from singularity.orchestrator.agent.output import bounded
from singularity.orchestrator.agent.tools import TOOL_NAMES, WorkspaceTools, tool_specs
from singularity.orchestrator.agents import shipped_tool_descriptions
from singularity.orchestrator.client import PlatformClient
from singularity.orchestrator.store import SingularityStore, TaskRecord, TrajectoryStep
from singularity.shared_queue import LlmResult

__all__ = [
    "ALL_TOOLS",
    "PLATFORM_TOOLS",
    "AgentLoop",
    "Budget",
    "LoopEnd",
    "Spent",
    "loop_tool_specs",
]

log = structlog.get_logger(__name__)

# What a command's output may send back to the model: its end matters most (the failures).
_OUTPUT_CHARS = 12_000
_QUESTION_CHARS = 2_000


@dataclass(frozen=True)
class Budget:
    """What one task's loop may spend, across its revisions; None: no bound."""

    steps: int = 40  # model calls
    tokens: int | None = 400_000
    cost_usd: float | None = 5.0
    wall_s: float | None = 3_600.0


@dataclass(frozen=True)
class LoopEnd:
    """How a loop ended: finished (the tests passed), or stopped (why, in words)."""

    outcome: Literal["finished", "stopped"]
    summary: str  # the agent's summary, or why it stopped
    model: str | None  # the model of the last call
    steps: int
    tokens: int
    cost_usd: float | None  # None when some call's cost is unknown


@dataclass
class Spent:
    """What a loop's model calls cost: calls, tokens, dollars (None once one is unknown)."""

    steps: int = 0
    tokens: int = 0
    cost_usd: float | None = 0.0

    @classmethod
    def of(cls, steps: Iterable[TrajectoryStep]) -> Spent:
        """What the model calls among a trajectory's steps cost."""
        spent = cls()
        for step in steps:
            if step.kind == "model":
                spent.add(step.tokens, step.cost_usd)
        return spent

    def add(self, tokens: int, cost_usd: float | None) -> None:
        self.steps += 1
        self.tokens += tokens
        self.cost_usd = (
            None if cost_usd is None or self.cost_usd is None else self.cost_usd + cost_usd
        )

    def exceeded(self, budget: Budget, started_at: datetime) -> str | None:
        if self.steps >= budget.steps:
            return f"the step budget ran out ({budget.steps} model calls)"
        if budget.tokens is not None and self.tokens >= budget.tokens:
            return f"the token budget ran out ({self.tokens} of {budget.tokens})"
        known = self.cost_usd
        if budget.cost_usd is not None and known is not None and known >= budget.cost_usd:
            return f"the cost budget ran out (${self.cost_usd:.4f} of ${budget.cost_usd})"
        elapsed = (datetime.now(UTC) - started_at).total_seconds()
        if budget.wall_s is not None and elapsed >= budget.wall_s:
            return f"the time budget ran out ({elapsed:.0f} s of {budget.wall_s:g} s)"
        return None


def _function(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            },
        },
    }


# The platform's tools and their arguments; what each is for is said in tools.md.
_PLATFORM_ARGUMENTS: dict[str, dict[str, Any]] = {
    "run_tests": {},
    "run_command": {"command": {"type": "string", "description": "Shell text, run by /bin/sh -c."}},
    "ask_human": {"question": {"type": "string"}},
    "finish": {"summary": {"type": "string"}},
}
PLATFORM_TOOLS = tuple(_PLATFORM_ARGUMENTS)
ALL_TOOLS = (*TOOL_NAMES, *PLATFORM_TOOLS)


def loop_tool_specs(descriptions: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Every tool the loop's model may call, the workspace's and the platform's, described as
    the agent kind's tools.md says (`descriptions`), else as shipped."""
    described = {**shipped_tool_descriptions(), **(descriptions or {})}
    platform = [
        _function(name, described[name], properties)
        for name, properties in _PLATFORM_ARGUMENTS.items()
    ]
    return [*tool_specs(descriptions), *platform]


Progress = Callable[[str], Awaitable[None]]


class AgentLoop:
    """One task's loop over its workspace (`work`), recorded in its trajectory."""

    def __init__(
        self,
        client: PlatformClient,
        store: SingularityStore,
        task: TaskRecord,
        work: Path,
        *,
        budget: Budget,
        task_type: str = "coder",
        progress: Progress | None = None,
        descriptions: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.task = task
        self.work = work
        self.budget = budget
        self.task_type = task_type
        self.tools = WorkspaceTools(work)
        self.specs = loop_tool_specs(descriptions)
        self._progress = progress
        self._spent = Spent()

    async def run(self, messages: list[dict[str, Any]], *, revision: int) -> LoopEnd:
        """Turns until the model finishes with passing tests, or a budget stops it. Earlier
        revisions' spending counts against the budget too (read from the trajectory)."""
        await self._count_earlier(revision)
        model: str | None = None
        turn = 0
        while True:
            why = self._spent.exceeded(self.budget, self.task.created_at)
            if why is not None:
                return self._end("stopped", why, model)
            answer = await self._model(messages, revision, turn)
            model = answer.model
            calls = answer.tool_calls or []
            messages.append(_assistant(answer))
            if not calls:
                # An answer without a tool call: the loop asks for one (the prompt says so).
                messages.append(
                    {
                        "role": "user",
                        "content": "Call a tool: go on with the task, or finish when it is done.",
                    }
                )
            for index, call in enumerate(calls):
                key = f"r{revision}-{turn}-tool-{index}"
                output, _, finished = await self._tool(
                    key, call.function.name, call.function.arguments
                )
                messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
                if finished:
                    return self._end("finished", _summary(call.function.arguments), model)
            turn += 1

    async def _count_earlier(self, revision: int) -> None:
        earlier = [
            step
            for step in await self.store.trajectory(self.task.id)
            if not step.key.startswith(f"r{revision}-")
        ]
        self._spent = Spent.of(earlier)

    async def _model(self, messages: list[dict[str, Any]], revision: int, turn: int) -> LlmResult:
        key = f"r{revision}-{turn}-model"
        started = time.monotonic()
        answer = await self.client.llm(
            messages,
            agent_id=self.task.agent_id,
            task_type=self.task_type,
            tools=self.specs,
            task_id=self.task.id,
            step=f"loop-{key}",
        )
        usage = answer.usage
        tokens = 0 if usage is None else usage.prompt_tokens + usage.completion_tokens
        self._spent.add(tokens, answer.cost_usd)
        names = [call.function.name for call in answer.tool_calls or []]
        await self._record(
            key,
            "model",
            answer.model or "unknown",
            {"messages": len(messages)},
            {"text": bounded(answer.result or "", 4_000), "tool_calls": names},
            ok=True,
            tokens=tokens,
            cost_usd=answer.cost_usd,
            wall_ms=(time.monotonic() - started) * 1000,
        )
        await self._say(f"model {answer.model}: " + (", ".join(names) or "no tool call"))
        return answer

    async def _tool(self, key: str, name: str, arguments: str) -> tuple[str, bool, bool]:
        """(output for the model, ok, finished) of one call: recorded, or run now."""
        recorded = await self.store.recorded_step(self.task.id, key)
        if recorded is not None:
            output, ok = recorded
            return str(output.get("text", "")), ok, bool(output.get("finished"))
        started = time.monotonic()
        text, ok, finished, changed = await self._run_tool(key, name, arguments)
        await self._record(
            key,
            "tool",
            name,
            {"arguments": bounded(arguments, 4_000)},
            {"text": text, "finished": finished, "changed": list(changed)},
            ok=ok,
            wall_ms=(time.monotonic() - started) * 1000,
        )
        await self._say(
            f"{name}: {'ok' if ok else 'error'}" + (f" ({', '.join(changed)})" if changed else "")
        )
        return text, ok, finished

    async def _run_tool(
        self, key: str, name: str, arguments: str
    ) -> tuple[str, bool, bool, tuple[str, ...]]:
        if name not in _PLATFORM_ARGUMENTS:
            output = await self.tools.run(name, arguments)
            return output.text, output.ok, False, output.changed
        values = _arguments(arguments)
        if values is None:
            return "Error: the arguments must be a JSON object.", False, False, ()
        if name == "run_tests":
            text, ok = await self._in_sandbox(key, self.task.test_command)
            return text, ok, False, ()
        if name == "run_command":
            command = values.get("command")
            if not isinstance(command, str) or not command.strip():
                return "Error: run_command needs a command (shell text).", False, False, ()
            text, ok = await self._in_sandbox(key, command)
            return text, ok, False, ()
        if name == "ask_human":
            question = values.get("question")
            if not isinstance(question, str) or not question.strip():
                return "Error: ask_human needs a question.", False, False, ()
            answer = await self.client.ask(
                question[:_QUESTION_CHARS],
                context={"task_id": self.task.id, "description": self.task.description},
                agent_id=self.task.agent_id,
                task_id=self.task.id,
                step=f"loop-{key}",
            )
            return f"The human answered: {answer}", True, False, ()
        # finish: only with passing tests
        text, ok = await self._in_sandbox(key, self.task.test_command)
        if not ok:
            return (
                "Not finished: the tests fail. Fix them, then call finish again.\n\n" + text,
                False,
                False,
                (),
            )
        return "Finished: the tests pass.\n\n" + text, True, True, ()

    async def _in_sandbox(self, key: str, command: str) -> tuple[str, bool]:
        result = await self.client.run_in_workspace(
            self.work,
            command,
            agent_id=self.task.agent_id,
            task_id=self.task.id,
            step=f"loop-{key}",
        )
        ok = result.status == "OK"
        header = f"`{command}`: {result.status}, exit status {result.exit_code}"
        # stdout, then stderr (or the reason the run ended, when the program did not end it)
        streams = (result.output or "") + (result.error or "")
        return (f"{header}\n{_tail(streams, _OUTPUT_CHARS)}" if streams else header), ok

    async def _record(
        self,
        key: str,
        kind: str,
        name: str,
        input: dict[str, Any],
        output: dict[str, Any],
        *,
        ok: bool,
        tokens: int = 0,
        cost_usd: float | None = None,
        wall_ms: float | None = None,
    ) -> None:
        step = TrajectoryStep(
            key=key,
            kind=kind,
            name=name,
            input=input,
            output=output,
            ok=ok,
            tokens=tokens,
            cost_usd=cost_usd,
            wall_ms=wall_ms,
            at=datetime.now(UTC),
        )
        await self.store.record_step(self.task.id, step)

    async def _say(self, message: str) -> None:
        if self._progress is not None:
            await self._progress(message)

    def _end(
        self, outcome: Literal["finished", "stopped"], summary: str, model: str | None
    ) -> LoopEnd:
        spent = self._spent
        log.info("loop_ended", task_id=self.task.id, outcome=outcome, steps=spent.steps)
        return LoopEnd(outcome, summary, model, spent.steps, spent.tokens, spent.cost_usd)


def _assistant(answer: LlmResult) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.result or None}
    if answer.tool_calls:
        message["tool_calls"] = [call.model_dump(mode="json") for call in answer.tool_calls]
    return message


def _arguments(arguments: str) -> dict[str, Any] | None:
    try:
        values = json.loads(arguments or "{}")
    except (ValueError, RecursionError):
        return None
    return values if isinstance(values, dict) else None


def _summary(arguments: str) -> str:
    values = _arguments(arguments) or {}
    summary = values.get("summary")
    return summary.strip() if isinstance(summary, str) and summary.strip() else "(no summary)"


def _tail(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return f"[{len(text) - max_chars} earlier characters not shown]\n{text[-max_chars:]}"
