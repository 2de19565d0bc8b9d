"""The arguments of each workspace tool: one model per tool, the source of both the JSON
Schema the model is shown and the validation its calls go through."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from singularity.orchestrator.agent.limits import Limits

__all__ = [
    "CreateFile",
    "DeleteFile",
    "EditFile",
    "ListFiles",
    "ReadFile",
    "SearchFiles",
    "ToolArguments",
    "WriteFile",
]

_BOUNDS = Limits()
RelativePath = Annotated[
    str,
    Field(
        max_length=_BOUNDS.max_path_chars,
        description="Path relative to the workspace root, such as 'src/app/main.py'.",
    ),
]
Text = Annotated[str, Field(max_length=_BOUNDS.max_text_chars)]
Glob = Annotated[
    str | None,
    Field(
        max_length=_BOUNDS.max_path_chars,
        description="Only files whose name matches this pattern, such as '*.py'; a pattern "
        "with '/' matches the path below `path` instead, '*' crossing directories.",
    ),
]


class ToolArguments(BaseModel):
    """Arguments as a model must send them: exact types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ListFiles(ToolArguments):
    path: RelativePath = Field(".", description="Directory to list; '.' is the workspace root.")
    recursive: bool = Field(False, description="List the whole tree below, files only.")
    glob: Glob = None


class ReadFile(ToolArguments):
    path: RelativePath
    start_line: int = Field(1, ge=1, description="First line to show, counting from 1.")
    end_line: int | None = Field(
        None, ge=1, description="Last line to show (inclusive); omit to read to the end."
    )


class SearchFiles(ToolArguments):
    pattern: str = Field(
        max_length=_BOUNDS.max_pattern_chars,
        description="Regular expression (Python syntax) matched against each line.",
    )
    path: RelativePath = Field(
        ".", description="Directory to search below; '.' is the whole workspace."
    )
    glob: Glob = None


class EditFile(ToolArguments):
    path: RelativePath
    old_text: Text = Field(
        description="Text to replace, copied exactly (whitespace and indentation included); "
        "it must occur exactly once in the file."
    )
    new_text: Text = Field(description="Text to put in its place; may be empty to delete it.")


class WriteFile(ToolArguments):
    path: RelativePath
    content: Text = Field(description="The file's whole new content.")


class CreateFile(WriteFile):
    pass


class DeleteFile(ToolArguments):
    path: RelativePath
