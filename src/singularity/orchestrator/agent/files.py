"""The workspace tools that list, read, write, create and delete whole files."""

from __future__ import annotations

import fnmatch
import itertools
from pathlib import Path

from singularity.orchestrator.agent.limits import Limits
from singularity.orchestrator.agent.output import ToolError, ToolOutput
from singularity.orchestrator.agent.paths import (
    create_regular,
    delete_regular,
    display,
    open_directory,
    read_regular,
    relative_parts,
    replace_regular,
    writable_parts,
)
from singularity.orchestrator.agent.text import decode, encode, is_binary, numbered, split_lines
from singularity.orchestrator.agent.tree import walk

__all__ = [
    "create_file",
    "delete_file",
    "glob_matches",
    "list_files",
    "read_file",
    "read_text",
    "write_file",
]

_LIST_SCAN_CAP = 100_000  # entries counted past the shown ones before "more than N" is said
_SUFFIX = {"dir": "/", "link": " (symbolic link, not followed)", "other": " (special file)"}


def glob_matches(glob: str | None, relative: str) -> bool:
    """Whether a path matches `glob`: by file name, or by the whole path if `glob` has a '/'."""
    if glob is None:
        return True
    name = relative if "/" in glob else relative.rsplit("/", 1)[-1]
    return fnmatch.fnmatchcase(name, glob)


def list_files(
    root: Path, limits: Limits, path: str = ".", recursive: bool = False, glob: str | None = None
) -> ToolOutput:
    """The entries of a directory (its whole tree when `recursive`), sorted, capped."""
    parts = relative_parts(path, limits.max_path_chars)
    prefix = f"{display(parts)}/" if parts else ""
    with open_directory(root, parts) as dir_fd:
        entries = walk(dir_fd, prefix, recursive=recursive, skip_git=".git" not in parts)
        lines = (
            f"{entry.path}{_SUFFIX.get(entry.kind, '')}"
            for entry in entries
            if not (recursive and entry.kind == "dir")
            and glob_matches(glob, entry.path.removeprefix(prefix))
        )
        shown = list(itertools.islice(lines, limits.max_list_entries))
        more = sum(1 for _ in itertools.islice(lines, _LIST_SCAN_CAP))
    if not shown:
        return ToolOutput(text=f"{display(parts)}: nothing {'matches' if glob else 'here'}")
    if more:
        counted = f"more than {more}" if more == _LIST_SCAN_CAP else str(more)
        shown.append(f"[{counted} more entries not shown; narrow the path or glob]")
    return ToolOutput(text="\n".join(shown))


def read_text(root: Path, limits: Limits, parts: tuple[str, ...]) -> tuple[str, bool]:
    """A file's text for reading or editing: (text, valid UTF-8); binary files refused."""
    data = read_regular(root, parts, limits.max_file_bytes)
    if is_binary(data):
        raise ToolError(f"{display(parts)} is a binary file; tools read and edit text only")
    return decode(data)


def read_file(
    root: Path, limits: Limits, path: str, start_line: int = 1, end_line: int | None = None
) -> ToolOutput:
    """The file's lines `start_line`..`end_line` (1-based, inclusive), numbered, capped."""
    if start_line < 1 or (end_line is not None and end_line < start_line):
        raise ToolError("start_line must be at least 1 and end_line at least start_line")
    parts = relative_parts(path, limits.max_path_chars)
    text, valid = read_text(root, limits, parts)
    lines = split_lines(text)
    last = min(len(lines), end_line or len(lines), start_line + limits.max_read_lines - 1)
    body, budget = [], limits.max_output_chars - 400  # room for the notes below
    for number in range(start_line, last + 1):
        line = numbered(number, lines[number - 1], limits.max_line_chars)
        budget -= len(line) + 1
        if budget < 0:
            last = number - 1
            break
        body.append(line)
    notes = _read_notes(display(parts), len(lines), start_line, last, valid)
    return ToolOutput(text="\n".join([*body, *notes]))


def _read_notes(name: str, total: int, first: int, last: int, valid: bool) -> list[str]:
    if total == 0:
        return [f"[{name} is empty]"]
    if first > total:
        return [f"[{name} has {total} lines; start_line {first} is past the end]"]
    notes = []
    if first > 1 or last < total:
        notes.append(f"[{name}: lines {first}-{last} of {total} shown]")
        if last < total:
            notes[-1] = notes[-1][:-1] + f"; read on with start_line={last + 1}]"
    if not valid:
        notes.append(f"[{name} is not valid UTF-8: undecodable bytes are shown as U+FFFD]")
    return notes


def write_file(root: Path, limits: Limits, path: str, content: str) -> ToolOutput:
    """Replace (or make) the whole file, creating missing directories."""
    parts = writable_parts(path, limits.max_path_chars)
    data = _bounded_bytes(content, limits)
    created = replace_regular(root, parts, data)
    verb = "Created" if created else "Wrote"
    return ToolOutput(
        text=f"{verb} {display(parts)} ({len(data)} bytes)", changed=(display(parts),)
    )


def create_file(root: Path, limits: Limits, path: str, content: str) -> ToolOutput:
    """Make a new file; refused if anything already exists at the path."""
    parts = writable_parts(path, limits.max_path_chars)
    data = _bounded_bytes(content, limits)
    create_regular(root, parts, data)
    return ToolOutput(
        text=f"Created {display(parts)} ({len(data)} bytes)", changed=(display(parts),)
    )


def delete_file(root: Path, limits: Limits, path: str) -> ToolOutput:
    """Remove one regular file (never a directory, a link or anything in .git)."""
    parts = writable_parts(path, limits.max_path_chars)
    delete_regular(root, parts)
    return ToolOutput(text=f"Deleted {display(parts)}", changed=(display(parts),))


def _bounded_bytes(content: str, limits: Limits) -> bytes:
    data = encode(content, "content")
    if len(data) > limits.max_write_bytes:
        raise ToolError(
            f"content is {len(data)} bytes; a file written may hold at most "
            f"{limits.max_write_bytes}"
        )
    return data
