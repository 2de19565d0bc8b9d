"""Plans: the architect step's answer, read into its SPARC phases and the files it names.

The plan prompts (`plan.md` of every agent) ask for this format, and `parse_plan` reads it:

    ## Specification
    What the change must do, and how we will know it is done.
    ## Pseudocode
    The logic, step by step.
    ## Architecture
    Where the change goes: modules, functions, data.
    ## Refinement
    Edge cases, risks, tests.
    ## Completion
    What finishes the task: tests to run, docs to touch.
    ## Files
    - `path/to/file.py`: read | change | create, and why

Phases that do not apply are left out. Models do not always follow a format, so headings are
recognised in other common forms too: `# 1. Specification`, `**Architecture**`,
`**Refinement:** text`, `Pseudocode:` or `2) Pseudocode` on a line of its own, and `Files to
read/change:` (or `Relevant files`). Headings inside fenced code blocks are not headings.
A plan with no recognisable phase keeps its whole text as the specification. Files are the
paths of the Files section's items (backticked or not); with no Files section, the
backticked paths anywhere outside code blocks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PHASES", "Plan", "parse_plan"]

PHASES = ("specification", "pseudocode", "architecture", "refinement", "completion")

_HEADING = re.compile(
    r"""^\s{0,3}
    (?P<hash>\#{1,6}\s+)?
    (?P<open>\*\*|__)?\s*
    (?:(?:phase|step|part)\s*)?(?:\d{1,2}|[ivx]{1,4})?\s*[.):\-\u2013\u2014]?\s*
    (?P<name>specifications?|spec|pseudo[-\s]?code|architecture|refinement|completion
        |(?:relevant\s+|affected\s+)?files(?:\s+(?:to|you\s+will)\s+[a-z/ ,&]*[a-z])?)\b
    \s*(?:\([^)]*\))?
    \s*(?P<colon1>:)?\s*
    (?P<close>\*\*|__)?
    \s*(?P<colon2>:)?
    (?P<rest>.*)$""",
    re.IGNORECASE | re.VERBOSE,
)
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_DASHES = ":- \u2013\u2014"  # what may follow a bold heading: a colon or a dash
_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")
_BACKTICKED = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(r"^[\w.\-/+@]+$")
_LOCATION = re.compile(r"(?::\d+(?:-\d+)?)$")


@dataclass(frozen=True)
class Plan:
    """A plan's text, its SPARC phases by name (those present), and the files it names."""

    text: str
    phases: dict[str, str]
    files: list[str]


def parse_plan(text: str) -> Plan:
    """Read a model's plan into its phases and files (see the module's docstring)."""
    sections = _sections(text)
    phases: dict[str, list[str]] = {}
    files: list[str] = []
    for name, lines in sections:
        if name == "files":
            files += _section_paths(lines)
        else:
            phases.setdefault(name, []).append("\n".join(lines).strip())
    found = {name: "\n\n".join(part for part in parts if part) for name, parts in phases.items()}
    found = {name: body for name, body in found.items() if body}
    if not found and text.strip():
        found = {"specification": text.strip()}
    if not any(name == "files" for name, _ in sections):
        files = _backticked_paths(_outside_fences(text.split("\n")))
    ordered = {name: found[name] for name in PHASES if name in found}
    return Plan(text=text.strip(), phases=ordered, files=list(dict.fromkeys(files)))


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(section name, its lines) for every recognised heading, in order."""
    sections: list[tuple[str, list[str]]] = []
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _heading(line)
        if heading is not None:
            name, rest = heading
            sections.append((name, [rest] if rest else []))
        elif sections:
            sections[-1][1].append(line)
    return sections


def _heading(line: str) -> tuple[str, str] | None:
    """(section name, text after the heading on its line) if the line is a heading."""
    match = _HEADING.match(line)
    if match is None:
        return None
    name = _canonical(match["name"])
    rest = match["rest"].strip()
    if match["hash"]:
        return name, ""  # the rest of a markdown heading is part of its title
    if match["open"] and match["close"]:
        return name, rest.lstrip(_DASHES).strip()
    if match["colon1"] or match["colon2"]:
        return name, rest
    return (name, "") if not rest else None


def _canonical(name: str) -> str:
    word = name.lower()
    if word.startswith("pseudo"):
        return "pseudocode"
    if word == "spec":
        return "specification"
    return "files" if "files" in word else word


def _section_paths(lines: Iterable[str]) -> list[str]:
    """The path of each item of a Files section: its first backticked path, else its first
    word; a line that is not an item gives its backticked paths, or its comma-separated ones."""
    paths: list[str] = []
    for line in lines:
        item = _ITEM.match(line)
        text = item.group(1) if item else line
        quoted = [path for span in _BACKTICKED.findall(text) if (path := _path(span, True))]
        if item:
            first = quoted[:1] or [p for p in [_path(_first_word(text), False)] if p]
            paths += first
        elif quoted:
            paths += quoted
        else:
            paths += [p for word in re.split(r"[,\s]+", text) if (p := _path(word, False))]
    return paths


def _first_word(text: str) -> str:
    words = text.replace("**", " ").split()
    return words[0].rstrip(":,;") if words else ""


def _path(candidate: str, quoted: bool) -> str | None:
    """A repository-relative file path made of `candidate`, or None when it is not one."""
    path = _LOCATION.sub("", candidate.strip().rstrip(":,;."))
    path = path.removeprefix("./")
    if not path or not _PATH.match(path) or path.startswith(("-", "/")) or path.endswith("/"):
        return None
    if ".." in path.split("/"):
        return None
    return path if quoted or "/" in path or "." in path.lstrip(".") else None


def _backticked_paths(lines: Iterable[str]) -> list[str]:
    paths: list[str] = []
    for line in lines:
        for span in _BACKTICKED.findall(line):
            path = _path(span, False)
            if path is not None:
                paths.append(path)
    return paths


def _outside_fences(lines: list[str]) -> list[str]:
    kept: list[str] = []
    in_fence = False
    for line in lines:
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            kept.append(line)
    return kept
