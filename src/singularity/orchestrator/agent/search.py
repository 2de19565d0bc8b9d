"""Searching the workspace with a regular expression the model wrote, under a time bound.

A model's pattern may backtrack catastrophically (`(a+)+$` on a line of a's). The `regex`
package checks a deadline inside its matcher, so one pattern cannot hold the process: the
whole search shares one budget, and each line's match gets what is left of it.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import regex

from singularity.orchestrator.agent.files import glob_matches
from singularity.orchestrator.agent.limits import Limits
from singularity.orchestrator.agent.output import ToolError, ToolOutput
from singularity.orchestrator.agent.paths import display, open_directory, read_entry, relative_parts
from singularity.orchestrator.agent.text import decode, is_binary, shown_line, split_lines
from singularity.orchestrator.agent.tree import walk

__all__ = ["search"]

# `regex` unrolls counted repeats when it compiles: `(?:a{1000}){1000}` takes half a
# gigabyte before any deadline applies. The product of every count in a pattern bounds that.
_MAX_REPEAT_PRODUCT = 100_000
_COUNTED_REPEAT = re.compile(r"\\.|\{(\d*)(?:,(\d*))?\}", re.DOTALL)


def search(
    root: Path, limits: Limits, pattern: str, path: str = ".", glob: str | None = None
) -> ToolOutput:
    """Lines matching `pattern` under `path` as `path:line: text`; .git, links, binary and
    huge files skipped."""
    compiled = _compile(pattern, limits)
    parts = relative_parts(path, limits.max_path_chars)
    prefix = f"{display(parts)}/" if parts else ""
    deadline = time.monotonic() + limits.search_seconds
    found: list[str] = []
    files = skipped = 0
    with open_directory(root, parts) as dir_fd:
        for entry in walk(dir_fd, prefix, recursive=True, skip_git=True):
            if time.monotonic() > deadline:  # walking and reading alone can take long
                raise _timed_out(limits, entry.path)
            if entry.kind != "file" or not glob_matches(glob, entry.path.removeprefix(prefix)):
                continue
            files += 1
            if files > limits.max_search_files:
                break
            data = read_entry(entry.dir_fd, entry.name, limits.max_file_bytes)
            if data is None or is_binary(data):
                skipped += 1
                continue
            _search_file(compiled, entry.path, data, deadline, found, limits)
            if len(found) > limits.max_search_matches:
                break
    return ToolOutput(text=_report(found, files, skipped, limits))


def _compile(pattern: str, limits: Limits) -> regex.Pattern[str]:
    if not pattern:
        raise ToolError("pattern is empty")
    if len(pattern) > limits.max_pattern_chars:
        raise ToolError(f"pattern is longer than {limits.max_pattern_chars} characters")
    if _repeat_product(pattern) > _MAX_REPEAT_PRODUCT:
        raise ToolError(
            "pattern repeats too much: the counts in its {m,n} repeats multiply past "
            f"{_MAX_REPEAT_PRODUCT}; use + or * instead of large counts"
        )
    try:
        return regex.compile(pattern)
    except (regex.error, OverflowError, RecursionError, ValueError) as error:
        raise ToolError(f"pattern is not a valid regular expression: {error}") from error


def _repeat_product(pattern: str) -> int:
    """The product of the counts of `{m}`, `{m,n}` and `{m,}` repeats (escapes skipped)."""
    counts = (
        max(int(found[1] or 0), int(found[2] or 0))
        for found in _COUNTED_REPEAT.finditer(pattern)
        if not found[0].startswith("\\")
    )
    return math.prod(max(count, 1) for count in counts)


def _search_file(
    compiled: regex.Pattern[str],
    name: str,
    data: bytes,
    deadline: float,
    found: list[str],
    limits: Limits,
) -> None:
    text, _ = decode(data)
    for number, line in enumerate(split_lines(text), start=1):
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            # concurrent: the matcher lets go of the GIL, so the event loop's thread runs on.
            hit = compiled.search(line, concurrent=True, timeout=left)
        except TimeoutError:
            raise _timed_out(limits, f"{name}, line {number}") from None
        if hit is not None:
            found.append(f"{name}:{number}: {shown_line(line, limits.max_line_chars)}")
            if len(found) > limits.max_search_matches:
                return


def _timed_out(limits: Limits, where: str) -> ToolError:
    return ToolError(
        f"the search took longer than {limits.search_seconds} seconds and was stopped "
        f"(in {where}); simplify the pattern (nested repeats such as (a+)+ backtrack without "
        "end) or narrow the path or glob"
    )


def _report(found: list[str], files: int, skipped: int, limits: Limits) -> str:
    notes = []
    if len(found) > limits.max_search_matches:
        found = found[: limits.max_search_matches]
        notes.append(f"[stopped at {limits.max_search_matches} matches; narrow the search]")
    if files > limits.max_search_files:
        notes.append(f"[stopped after {limits.max_search_files} files; narrow the path or glob]")
    if skipped:
        notes.append(f"[{skipped} binary, huge or unreadable files skipped]")
    if not found:
        return "\n".join(["No matches.", *notes])
    return "\n".join([*found, *notes])
