"""Helpers of the workspace tool tests: calls as a model makes them, and lowered limits."""

from __future__ import annotations

import json
from pathlib import Path

from singularity.orchestrator.agent import Limits, ToolOutput, WorkspaceTools

SECRET = "outside: never read, never changed\n"
MAIN_PY = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a + b\n"


def call(tools: WorkspaceTools, name: str, **arguments: object) -> ToolOutput:
    """One tool call as a model makes it: a name and a JSON object."""
    return tools.run_sync(name, json.dumps(arguments))


def small(workspace: Path, **bounds: int | float) -> WorkspaceTools:
    """The tools on `workspace` with some limits lowered, to reach them cheaply."""
    return WorkspaceTools(workspace, Limits(**bounds))  # type: ignore[arg-type]
