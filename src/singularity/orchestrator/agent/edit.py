"""The exact search/replace edit: the search text must occur once, or nothing changes."""

from __future__ import annotations

import difflib
from pathlib import Path

from singularity.orchestrator.agent.files import read_text
from singularity.orchestrator.agent.limits import Limits
from singularity.orchestrator.agent.output import ToolError, ToolOutput
from singularity.orchestrator.agent.paths import display, replace_regular, writable_parts
from singularity.orchestrator.agent.text import encode, numbered, split_lines

__all__ = ["edit_file"]

_CLOSEST = 3  # lines offered when the search text is not found
_CONTEXT = 3  # lines shown around the edited region
_SCORED_LINES = 20_000  # lines scored for likeness at most: a bound on the work


def edit_file(root: Path, limits: Limits, path: str, old_text: str, new_text: str) -> ToolOutput:
    """Replace the one occurrence of `old_text` with `new_text`."""
    if not old_text:
        raise ToolError("old_text is empty; use write_file or create_file for whole files")
    if old_text == new_text:
        raise ToolError("old_text and new_text are the same; nothing would change")
    parts = writable_parts(path, limits.max_path_chars)
    text, _ = read_text(root, limits, parts)
    count = text.count(old_text)
    if count == 0 and "\r\n" in text and "\r" not in old_text:
        # read_file shows lines without their "\r": match as the model saw them.
        old_text, new_text = (each.replace("\n", "\r\n") for each in (old_text, new_text))
        count = text.count(old_text)
    if count == 0:
        raise ToolError(_not_found(display(parts), text, old_text, limits))
    if count > 1:
        raise ToolError(
            f"old_text occurs {count} times in {display(parts)}; include more of the "
            "surrounding lines so that it occurs exactly once"
        )
    start = text.index(old_text)
    edited = text[:start] + new_text + text[start + len(old_text) :]
    data = encode(edited, "new_text")
    if len(data) > limits.max_write_bytes:
        raise ToolError(
            f"the edited file would be {len(data)} bytes; the limit is {limits.max_write_bytes}"
        )
    replace_regular(root, parts, data)
    first = text.count("\n", 0, start) + 1
    shown = _around(edited, first, new_text.count("\n") + 1, limits)
    return ToolOutput(
        text=f"Edited {display(parts)} at line {first}:\n{shown}", changed=(display(parts),)
    )


def _not_found(name: str, text: str, old_text: str, limits: Limits) -> str:
    """The refusal for a search text that is not in the file, with the likeliest lines."""
    wanted = next((line.strip() for line in old_text.split("\n") if line.strip()), "")
    lines = split_lines(text)[:_SCORED_LINES]
    scored = []
    for number, line in enumerate(lines, start=1):
        matcher = difflib.SequenceMatcher(None, wanted, line.strip(), autojunk=False)
        if matcher.real_quick_ratio() > 0.5 and matcher.quick_ratio() > 0.5:
            scored.append((matcher.ratio(), number))
    best = sorted(scored, key=lambda pair: (-pair[0], pair[1]))[:_CLOSEST]
    message = f"old_text was not found in {name} (0 occurrences); it must match exactly"
    if not best:
        return f"{message}, whitespace included. Read the file to see its current text."
    closest = "\n".join(
        numbered(number, lines[number - 1], limits.max_line_chars) for _, number in best
    )
    return f"{message}, whitespace included. The closest lines are:\n{closest}"


def _around(text: str, first: int, count: int, limits: Limits) -> str:
    """The edited region with a few lines either side, numbered, bounded."""
    lines = split_lines(text)
    start = max(1, first - _CONTEXT)
    end = min(len(lines), first + count - 1 + _CONTEXT, start + limits.max_read_lines - 1)
    shown = [numbered(n, lines[n - 1], limits.max_line_chars) for n in range(start, end + 1)]
    return "\n".join(shown)
