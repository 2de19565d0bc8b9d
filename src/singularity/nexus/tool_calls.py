"""The tools of a request, and the tool calls of a model's answer, checked against them.

Whichever way a model was asked (natively, or through the text protocol of
`nexus/tool_text.py`), a call reaches the agent only when it names one of the tools it was
allowed and its arguments are a bounded JSON object. Any other call stays in the answer's text,
where the agent can read it: never lost, never a crash, never a call the agent did not offer.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from singularity.shared_queue.messages import (
    MAX_TOOL_ARGUMENTS_CHARS,
    MAX_TOOL_CALLS,
    MAX_TOOL_SCHEMA_DEPTH,
    LlmRequest,
    NamedToolChoice,
    Tool,
    ToolCall,
    ToolChoice,
    json_depth,
)

__all__ = [
    "Answer",
    "ToolSet",
    "checked_call",
    "finished",
    "native_answer",
    "new_call_id",
    "unsent_call",
]


@dataclass(frozen=True, slots=True)
class ToolSet:
    """A request's tools and its tool_choice."""

    tools: tuple[Tool, ...]
    choice: ToolChoice | None = None

    @classmethod
    def of(cls, request: LlmRequest) -> ToolSet | None:
        """The request's tools, or None when it offers none."""
        if not request.tools:
            return None
        return cls(tuple(request.tools), request.tool_choice)

    @property
    def allowed(self) -> frozenset[str]:
        """The names a call may have: none under "none", one when the choice names it."""
        if self.choice == "none":
            return frozenset()
        if isinstance(self.choice, NamedToolChoice):
            return frozenset({self.choice.function.name})
        return frozenset(tool.function.name for tool in self.tools)

    def as_params(self) -> dict[str, Any]:
        """The `tools` and `tool_choice` parameters of an OpenAI-style call."""
        params: dict[str, Any] = {
            "tools": [tool.model_dump(mode="json", exclude_none=True) for tool in self.tools]
        }
        if self.choice is not None:
            params["tool_choice"] = (
                self.choice.model_dump(mode="json")
                if isinstance(self.choice, NamedToolChoice)
                else self.choice
            )
        return params


@dataclass(frozen=True, slots=True)
class Answer:
    """A model's answer as the agent gets it: its text and its checked tool calls."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None


def new_call_id() -> str:
    """A fresh id for a call whose model gave none (or one already used in the answer)."""
    return "call_" + secrets.token_hex(12)


def checked_call(
    name: Any, arguments: Any, allowed: Iterable[str], call_id: Any = None
) -> ToolCall | None:
    """The call as the agent gets it, or None when it cannot be one (it then stays text).

    `arguments` may be the JSON text a model wrote (kept as written when it reads as an
    object) or an object already parsed; absent arguments are an empty object.
    """
    if not isinstance(name, str) or name not in allowed:
        return None
    text = _arguments_text(arguments)
    if text is None:
        return None
    if not isinstance(call_id, str) or not 0 < len(call_id) <= 256:
        call_id = new_call_id()
    try:
        return ToolCall.model_validate(
            {"id": call_id, "function": {"name": name, "arguments": text}}
        )
    except ValidationError:
        return None


def _arguments_text(arguments: Any) -> str | None:
    """Arguments as JSON text of an object within bounds, or None."""
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        if len(arguments) > MAX_TOOL_ARGUMENTS_CHARS:
            return None
        value = _loads(arguments)
        return arguments if _bounded_object(value) else None
    if not _bounded_object(arguments):
        return None
    text = json.dumps(arguments, ensure_ascii=False)
    return text if len(text) <= MAX_TOOL_ARGUMENTS_CHARS else None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        return None


def _bounded_object(value: Any) -> bool:
    return isinstance(value, dict) and json_depth(value) <= MAX_TOOL_SCHEMA_DEPTH


def native_answer(message: Any, finish_reason: Any, tools: ToolSet | None) -> Answer:
    """The answer of a model asked natively (LiteLLM's message), its calls checked."""
    text = _get(message, "content")
    text = text if isinstance(text, str) else ""
    raw_calls = _get(message, "tool_calls") or ()
    if not isinstance(raw_calls, list | tuple):
        raw_calls = [raw_calls]
    allowed = tools.allowed if tools is not None else frozenset()
    calls: list[ToolCall] = []
    unsent: list[str] = []
    for raw in raw_calls:
        function = _get(raw, "function")
        name, arguments = _get(function, "name"), _get(function, "arguments")
        call = checked_call(name, arguments, allowed, _get(raw, "id"))
        if call is None or len(calls) >= MAX_TOOL_CALLS:
            unsent.append(unsent_call(name, arguments))
            continue
        calls.append(call)
    return finished(text, calls, unsent, finish_reason)


def finished(
    text: str, calls: Sequence[ToolCall], unsent: Sequence[str], finish_reason: Any
) -> Answer:
    """The answer: unique call ids, calls that could not be sent appended to the text."""
    seen: set[str] = set()
    unique: list[ToolCall] = []
    for call in calls:
        if call.id in seen:
            call = call.model_copy(update={"id": new_call_id()})
        seen.add(call.id)
        unique.append(call)
    full = "\n".join(part for part in (text, *unsent) if part)
    reason = finish_reason if isinstance(finish_reason, str) and len(finish_reason) <= 64 else None
    if unique:
        reason = "tool_calls"
    elif reason == "tool_calls":  # every call stayed text: to the agent, the model stopped
        reason = "stop"
    return Answer(full, tuple(unique), reason)


def unsent_call(name: Any, arguments: Any) -> str:
    """A call that cannot go to the agent as one, as text it can read (bounded)."""
    shown = {"name": name if isinstance(name, str) else None, "arguments": arguments}
    try:
        text = json.dumps(shown, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        text = repr(shown)
    if len(text) > MAX_TOOL_ARGUMENTS_CHARS:
        text = text[:MAX_TOOL_ARGUMENTS_CHARS] + "..."
    return f"[a tool call that could not be used: {text}]"


def _get(value: Any, key: str) -> Any:
    """A field of LiteLLM's objects or of plain dicts alike."""
    if isinstance(value, Mapping):
        return value.get(key)
    return getattr(value, key, None)
