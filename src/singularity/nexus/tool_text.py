"""Tool calling in plain text, for models that have none of their own (`tool_calling = "text"`).

Nexus writes the tools and this protocol into the system message, writes the conversation's
earlier calls and their results as text, and reads the calls back out of the answer, so that
the agent gets the same `tool_calls` whichever way the model was asked. A call is a block

    <tool_call>
    {"name": "read_file", "arguments": {"path": "README.md"}}
    </tool_call>

that starts a line outside a fenced code block and holds one JSON object naming a tool the
request allows, with an object of arguments. Anything else, a malformed block, an unknown
tool, arguments too large or too deep, a block inside a code fence, stays text.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from singularity.nexus.tool_calls import Answer, ToolSet, checked_call, finished
from singularity.shared_queue.messages import (
    MAX_TOOL_ARGUMENTS_CHARS,
    MAX_TOOL_CALLS,
    NamedToolChoice,
    ToolCall,
)

__all__ = ["CLOSE", "OPEN", "parse_answer", "render_messages", "uses_tools"]

OPEN = "<tool_call>"
CLOSE = "</tool_call>"

PROTOCOL = f"""\
You can call tools. To call one, write a block on lines of its own, exactly like this:
{OPEN}
{{"name": "TOOL_NAME", "arguments": {{"ARGUMENT": "VALUE"}}}}
{CLOSE}
The block holds one JSON object: the tool's name and its arguments as an object that follows \
the tool's parameters schema. Write one block per call; you may write several. Never put a \
block inside a code fence. After your calls, stop: each result comes back in a <tool_result> \
block. When you need no tool, answer in plain text.

The tools, one JSON object per line:"""

_OPENING = re.compile(r"^[ \t]*" + re.escape(OPEN), re.MULTILINE)
_FENCE = re.compile(r"^[ \t]*(```|~~~)", re.MULTILINE)
# A block's JSON may be wrapped in a fence of its own inside the tags.
_INNER_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def uses_tools(messages: Sequence[Mapping[str, Any]], tools: ToolSet | None) -> bool:
    """Whether the conversation needs the protocol: tools offered, or earlier calls in it."""
    return tools is not None or any(
        m.get("role") == "tool" or m.get("tool_calls") for m in messages
    )


# -- rendering ------------------------------------------------------------------------------


def render_messages(
    messages: Sequence[Mapping[str, Any]], tools: ToolSet | None
) -> list[dict[str, Any]]:
    """The conversation as a model without tool calling reads it: plain roles, plain text."""
    names = _call_names(messages)
    rendered = [_render_message(message, names) for message in messages]
    instructions = _instructions(tools)
    if instructions is None:
        return rendered
    if rendered and rendered[0].get("role") == "system":
        first = rendered[0]
        rendered[0] = {**first, "content": f"{_text(first.get('content'))}\n\n{instructions}"}
    else:
        rendered.insert(0, {"role": "system", "content": instructions})
    return rendered


def _instructions(tools: ToolSet | None) -> str | None:
    if tools is None or tools.choice == "none":
        return None
    lines = [PROTOCOL]
    for tool in tools.tools:
        lines.append(json.dumps(tool.function.model_dump(mode="json", exclude_none=True)))
    if tools.choice == "required":
        lines.append("\nYou must call at least one tool now.")
    elif isinstance(tools.choice, NamedToolChoice):
        lines.append(f"\nYou must call the tool {tools.choice.function.name} now.")
    return "\n".join(lines)


def _render_message(message: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    role = message.get("role")
    if role == "tool":
        call_id = str(message.get("tool_call_id") or "")
        name = message.get("name") or names.get(call_id, "")
        header = f"<tool_result name={json.dumps(name)} id={json.dumps(call_id)}>"
        return {
            "role": "user",
            "content": f"{header}\n{_text(message.get('content'))}\n</tool_result>",
        }
    calls = message.get("tool_calls")
    if role == "assistant" and calls:
        blocks = [_block(call) for call in calls]
        text = _text(message.get("content"))
        content = "\n".join([text, *blocks] if text else blocks)
        return {k: v for k, v in message.items() if k != "tool_calls"} | {"content": content}
    return dict(message)


def _block(call: Mapping[str, Any]) -> str:
    function = call.get("function") or {}
    arguments = function.get("arguments", "{}")
    try:
        parsed: Any = json.loads(arguments)
    except (ValueError, TypeError, RecursionError):
        parsed = arguments  # written as the model wrote it: a string
    body = json.dumps({"name": function.get("name"), "arguments": parsed}, ensure_ascii=False)
    return f"{OPEN}\n{body}\n{CLOSE}"


def _call_names(messages: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The function name of every earlier call, by its id (for results that omit it)."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or ():
            names[str(call.get("id"))] = str((call.get("function") or {}).get("name"))
    return names


def _text(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


# -- parsing --------------------------------------------------------------------------------


def parse_answer(text: str, tools: ToolSet | None, finish_reason: Any) -> Answer:
    """The answer with its calls read out; every block that is not a call stays text.

    Linear in the answer's length, whatever it holds: each opening looks for the first
    closing after it, the closing found is reused by every opening before it, and only the
    last opening before a closing can be a block (one with another opening inside is not).
    """
    allowed: frozenset[str] = tools.allowed if tools is not None else frozenset()
    if not allowed:
        return finished(text, [], [], finish_reason)
    fences = [m.start() for m in _FENCE.finditer(text)]
    kept: list[str] = []
    calls: list[ToolCall] = []
    done = 0  # text before this offset is handled
    close = -1
    openings = [(m.start(), m.end()) for m in _OPENING.finditer(text)]
    for index, (start, inner) in enumerate(openings):
        if start < done or _fenced(start, fences):
            continue
        if close < inner:
            close = text.find(CLOSE, inner)
            if close == -1:
                break  # no block after this one can close either
        if index + 1 < len(openings) and openings[index + 1][0] < close:
            continue  # another block opens inside this one: not a call, stays text
        if close - inner > MAX_TOOL_ARGUMENTS_CHARS + 4096:
            continue
        call = _read_call(text[inner:close], allowed)
        if call is None or len(calls) >= MAX_TOOL_CALLS:
            continue  # not a call the agent can take: stays text, as the model wrote it
        calls.append(call)
        kept.append(text[done:start])
        done = close + len(CLOSE)
    if not calls:
        return finished(text, [], [], finish_reason)
    kept.append(text[done:])
    return finished(_tidy("".join(kept)), calls, [], finish_reason)


def _read_call(body: str, allowed: frozenset[str]) -> ToolCall | None:
    """The call a block holds, or None when it does not read as one the agent allowed."""
    body = _INNER_FENCE.sub("", body.strip())
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        return None
    if not isinstance(value, dict):
        return None
    return checked_call(value.get("name"), value.get("arguments"), allowed)


def _fenced(offset: int, fences: Sequence[int]) -> bool:
    """Whether `offset` lies inside a fenced code block (after an odd number of fences)."""
    return bisect.bisect_left(fences, offset) % 2 == 1


def _tidy(text: str) -> str:
    """The text left around the calls, without the blank lines the blocks leave behind."""
    return re.sub(r"\n{3,}", "\n\n", text).strip()
