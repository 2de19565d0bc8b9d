"""The coding agent's workspace tools: list, read, search, edit, write, create and delete
files inside one directory, never outside it."""

from __future__ import annotations

from singularity.orchestrator.agent.limits import Limits
from singularity.orchestrator.agent.output import ToolError, ToolOutput
from singularity.orchestrator.agent.tools import TOOL_NAMES, WorkspaceTools, tool_specs

__all__ = ["TOOL_NAMES", "Limits", "ToolError", "ToolOutput", "WorkspaceTools", "tool_specs"]
