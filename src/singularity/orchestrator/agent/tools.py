"""The workspace tools as a model sees them: their specs, and the one dispatcher that runs a
call (a name and its JSON arguments) and always answers with text, never an exception."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from singularity.orchestrator.agent import arguments as args
from singularity.orchestrator.agent.edit import edit_file
from singularity.orchestrator.agent.files import (
    create_file,
    delete_file,
    list_files,
    read_file,
    write_file,
)
from singularity.orchestrator.agent.limits import Limits
from singularity.orchestrator.agent.output import ToolError, ToolOutput, bounded
from singularity.orchestrator.agent.search import search
from singularity.orchestrator.agents import shipped_tool_descriptions

__all__ = ["TOOL_NAMES", "WorkspaceTools", "tool_specs"]

log = structlog.get_logger(__name__)

_MAX_ERRORS_SHOWN = 5


@dataclass(frozen=True)
class _Tool:
    arguments: type[args.ToolArguments]
    function: Callable[..., ToolOutput]


_TOOLS: dict[str, _Tool] = {
    "list_files": _Tool(args.ListFiles, list_files),
    "read_file": _Tool(args.ReadFile, read_file),
    "search_files": _Tool(args.SearchFiles, search),
    "edit_file": _Tool(args.EditFile, edit_file),
    "write_file": _Tool(args.WriteFile, write_file),
    "create_file": _Tool(args.CreateFile, create_file),
    "delete_file": _Tool(args.DeleteFile, delete_file),
}

TOOL_NAMES: tuple[str, ...] = tuple(_TOOLS)


def _spec(name: str, tool: _Tool, description: str) -> dict[str, Any]:
    schema = tool.arguments.model_json_schema()
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": schema},
    }


def _without_titles(schema: Any) -> Any:
    """The schema less pydantic's generated titles, which only repeat the field names."""
    if isinstance(schema, dict):
        return {
            key: _without_titles(value)
            for key, value in schema.items()
            if not (key == "title" and isinstance(value, str))
        }
    if isinstance(schema, list):
        return [_without_titles(item) for item in schema]
    return schema


def tool_specs(descriptions: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """OpenAI-style function specs of every workspace tool, described as the agent kind's
    tools.md says (`descriptions`), else as shipped; a fresh copy to change freely."""
    described = {**shipped_tool_descriptions(), **(descriptions or {})}
    return [_without_titles(_spec(name, tool, described[name])) for name, tool in _TOOLS.items()]


@dataclass(frozen=True)
class WorkspaceTools:
    """The tools bound to one workspace directory."""

    root: Path
    limits: Limits = field(default_factory=Limits)

    async def run(self, name: str, arguments_json: str) -> ToolOutput:
        """Run one tool call in a worker thread, so file work never stalls the event loop."""
        return await asyncio.to_thread(self.run_sync, name, arguments_json)

    def run_sync(self, name: str, arguments_json: str) -> ToolOutput:
        """Run one tool call; every failure becomes an error text for the model."""
        try:
            output = self._call(name, arguments_json)
        except ToolError as error:
            output = _error(str(error))
        except OSError as error:
            output = _error(f"{name} failed: {error.strerror or error}")
        except Exception:  # the model must get an answer whatever broke
            log.exception("workspace tool failed", tool=name)
            output = _error(f"{name} failed unexpectedly; the failure was logged")
        return output.model_copy(
            update={"text": bounded(output.text, self.limits.max_output_chars)}
        )

    def _call(self, name: str, arguments_json: str) -> ToolOutput:
        tool = _TOOLS.get(name) if isinstance(name, str) else None
        if tool is None:
            raise ToolError(f"there is no tool {name!r}; the tools are: {', '.join(TOOL_NAMES)}")
        parsed = _parse(name, arguments_json, self.limits)
        try:
            valid = tool.arguments.model_validate(parsed)
        except ValidationError as error:
            raise ToolError(_describe(name, error)) from None
        return tool.function(self.root, self.limits, **valid.model_dump())


def _parse(name: str, arguments_json: str, limits: Limits) -> dict[str, Any]:
    if not isinstance(arguments_json, str | bytes):
        raise ToolError(f"arguments for {name} must be a JSON object in a string")
    if len(arguments_json) > limits.max_arguments_chars:
        raise ToolError(
            f"arguments for {name} are {len(arguments_json)} characters long; the limit is "
            f"{limits.max_arguments_chars}"
        )
    if not arguments_json.strip():
        return {}
    try:
        parsed = json.loads(arguments_json)
    except (ValueError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise ToolError(f"arguments for {name} are not valid JSON: {reason}") from None
    if not isinstance(parsed, dict):
        raise ToolError(f"arguments for {name} must be a JSON object, not {type(parsed).__name__}")
    return parsed


def _describe(name: str, error: ValidationError) -> str:
    """The validation errors without the values sent (which may be huge)."""
    problems = [
        f"{'.'.join(str(part) for part in problem['loc']) or 'arguments'}: {problem['msg']}"
        for problem in error.errors(include_url=False, include_input=False)
    ]
    more = len(problems) - _MAX_ERRORS_SHOWN
    shown = problems[:_MAX_ERRORS_SHOWN] + ([f"and {more} more"] if more > 0 else [])
    return f"invalid arguments for {name}: " + "; ".join(shown)


def _error(text: str) -> ToolOutput:
    return ToolOutput(text=f"Error: {text}", ok=False)
