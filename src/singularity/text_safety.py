"""Characters that make text read differently from what it is, found and shown as markers.

A diff, a file name or a question written by an agent may hold characters a reviewer cannot
see: bidirectional controls that reorder what is displayed (Trojan Source), zero-width and
other format characters, control characters a terminal obeys. A reviewer must see them, so
the web UI and the CLI show each one as a marker such as `<U+202E>` and warn about them.

The set is defined once, here, from Unicode categories; the web UI receives it as a regular
expression (`js_pattern`), so both views flag exactly the same characters.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = ["Hidden", "escape_hidden", "find_hidden", "js_pattern", "marker", "warning"]

# Control, format (bidi controls, zero-width, BOM, tags...), line and paragraph separators.
_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
# What a text may hold in plain sight: tab and newline (a CR is allowed only before a LF).
_ALLOWED = frozenset("\t\n\r")
# Hangul fillers: letters that print as nothing (used to hide identifiers in code).
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")


@dataclass(frozen=True, slots=True)
class Hidden:
    """One hidden character: where it is (1-based line and column) and what it is."""

    line: int
    column: int
    char: str

    @property
    def code(self) -> str:
        return f"U+{ord(self.char):04X}"


def marker(char: str) -> str:
    """How a hidden character is shown: `<U+202E>`."""
    return f"<U+{ord(char):04X}>"


@functools.cache
def _ranges() -> tuple[tuple[int, int], ...]:
    """The hidden code points as ranges (computed once: about 0.1 s)."""
    ranges: list[tuple[int, int]] = []
    for point in range(sys.maxunicode + 1):
        char = chr(point)
        hidden = char in _FILLERS or (
            char not in _ALLOWED and unicodedata.category(char) in _CATEGORIES
        )
        if not hidden:
            continue
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1] = (ranges[-1][0], point)
        else:
            ranges.append((point, point))
    return tuple(ranges)


def _class(escape: str) -> str:
    parts = []
    for first, last in _ranges():
        parts.append(
            escape.format(first)
            if first == last
            else f"{escape.format(first)}-{escape.format(last)}"
        )
    return "".join(parts)


@functools.cache
def _pattern() -> re.Pattern[str]:
    return re.compile(r"\r(?!\n)|[" + _class(r"\U{:08X}") + "]")


@functools.cache
def js_pattern() -> str:
    """The same set as a JavaScript regular expression (for `new RegExp(p, "gu")`)."""
    return r"\r(?!\n)|[" + _class(r"\u{{{:X}}}") + "]"


def _matches(text: str) -> Iterator[re.Match[str]]:
    return _pattern().finditer(text)


def find_hidden(text: str | None) -> list[Hidden]:
    """Every hidden character of `text`, in order."""
    if not text:
        return []
    found = []
    for match in _matches(text):
        start = match.start()
        line_start = text.rfind("\n", 0, start) + 1
        line = text.count("\n", 0, start) + 1
        found.append(Hidden(line, start - line_start + 1, match.group()))
    return found


def escape_hidden(text: str) -> str:
    """`text` with each hidden character replaced by its marker."""
    return _pattern().sub(lambda m: marker(m.group()), text)


def warning(fields: Mapping[str, str | None], *, lines_of: str = "diff") -> str | None:
    """One sentence for a reviewer naming where hidden characters are, or None if nowhere.

    `fields` maps a field's name to its text; the lines of the field `lines_of` are named.
    """
    count = 0
    codes: list[str] = []
    where: list[str] = []
    for name, text in fields.items():
        found = find_hidden(text)
        if not found:
            continue
        count += len(found)
        codes.extend(h.code for h in found if h.code not in codes)
        if name == lines_of:
            lines = sorted({h.line for h in found})
            shown = ", ".join(str(n) for n in lines[:10]) + (", ..." if len(lines) > 10 else "")
            where.append(f"{name} line{'s' if len(lines) > 1 else ''} {shown}")
        else:
            where.append(name)
    if not count:
        return None
    kinds = ", ".join(codes[:6]) + (", ..." if len(codes) > 6 else "")
    plural = "s" if count > 1 else ""
    return (
        f"This contains {count} hidden or bidirectional Unicode character{plural} ({kinds}) "
        f"in {'; '.join(where)}: it may read differently from what it is. "
        "Each is shown as <U+....>."
    )
