"""The workspace tools as a model sees them: their specs, and the one dispatcher that runs a
call (a name and its JSON arguments) and always answers with text, never an exception."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
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

__all__ = ["TOOL_NAMES", "WorkspaceTools", "tool_specs"]

log = structlog.get_logger(__name__)

_MAX_ERRORS_SHOWN = 5


@dataclass(frozen=True)
class _Tool:
    arguments: type[args.ToolArguments]
    function: Callable[..., ToolOutput]
    description: str


_TOOLS: dict[str, _Tool] = {
    "list_files": _Tool(
        args.ListFiles,
        list_files,
        "List a directory of the workspace, sorted. Directories end in '/'. With recursive, "
        "every file below it (the .git directory is not entered unless you list it). "
        "Symbolic links are shown but never followed.",
    ),
    "read_file": _Tool(
        args.ReadFile,
        read_file,
        "Read a text file, or a range of its lines, with line numbers. Long files are cut: "
        "the note at the end says which lines were shown and where to read on. Binary files "
        "are refused.",
    ),
    "search_files": _Tool(
        args.SearchFiles,
        search,
        "Search the workspace's text files for lines matching a regular expression; prints "
        "'path:line: text' for each. Binary and huge files and .git are skipped; a pattern "
        "that takes too long is stopped.",
    ),
    "edit_file": _Tool(
        args.EditFile,
        edit_file,
        "Change a file by replacing old_text with new_text. old_text must be copied exactly "
        "from the file and occur exactly once: include enough surrounding lines to make it "
        "unique. Read the file first. Prefer this to write_file for changes to existing files.",
    ),
    "write_file": _Tool(
        args.WriteFile,
        write_file,
        "Write a file's whole content, replacing it if it exists; missing directories are "
        "created. Files under .git cannot be written.",
    ),
    "create_file": _Tool(
        args.CreateFile,
        create_file,
        "Create a new file with the given content; refused if the file already exists. "
        "Missing directories are created.",
    ),
    "delete_file": _Tool(
        args.DeleteFile,
        delete_file,
        "Delete one file (not a directory). Files under .git cannot be deleted.",
    ),
}

TOOL_NAMES: tuple[str, ...] = tuple(_TOOLS)


def _spec(name: str, tool: _Tool) -> dict[str, Any]:
    schema = tool.arguments.model_json_schema()
    return {
        "type": "function",
        "function": {"name": name, "description": tool.description, "parameters": schema},
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


_SPECS = tuple(_without_titles(_spec(name, tool)) for name, tool in _TOOLS.items())


def tool_specs() -> list[dict[str, Any]]:
    """OpenAI-style function specs of every workspace tool (a fresh copy to change freely)."""
    return copy.deepcopy(list(_SPECS))


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
