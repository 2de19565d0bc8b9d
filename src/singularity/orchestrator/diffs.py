"""Unified diffs from model answers: finding them, putting them in a form git accepts, the
files they touch, and the static checks made before git sees them.

A model's diff is often almost right: hunk headers with wrong line counts, or file headers
without git's `a/` and `b/` prefixes. `normalise_diff` repairs exactly those two faults, so
the text that travels on (to the sandbox, to the human) applies with a plain `git apply`:

- every hunk header's counts are recounted from the hunk's lines (as `git apply --recount`
  would), an empty line inside a hunk being a blank context line;
- a `--- X` / `+++ X` pair naming the same unprefixed path becomes `--- a/X` / `+++ b/X`
  (and `/dev/null` pairs likewise), so that git's usual `-p1` finds the file;
- blank lines after a hunk's last line are dropped, and the diff ends with a newline.

Paths are read as `git apply` reads them (`-p1`: the first component, `a/` or `b/`, is
stripped).
"""

from __future__ import annotations

import codecs
import re
from pathlib import PurePosixPath

__all__ = ["diff_problem", "extract_diff", "normalise_diff", "touched_files"]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+.-]*)")
_DIFF_INFO = ("diff", "patch", "udiff")
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$")
_GIT_HEADER_LINES = (
    "diff --git ",
    "index ",
    "new file mode ",
    "deleted file mode ",
    "old mode ",
    "new mode ",
    "similarity index ",
    "dissimilarity index ",
    "rename from ",
    "rename to ",
    "copy from ",
    "copy to ",
    "Binary files ",
    "GIT binary patch",
)
_NAMED = ("rename from ", "rename to ", "copy from ", "copy to ")
_SYMLINK_MODE = re.compile(r"^(new file mode|new mode) 120000\b")


def extract_diff(text: str) -> str | None:
    """The unified diff in a model's answer (normalised), or None when it holds none.

    The diff is the content of the ```diff / ```patch fenced blocks (several are joined in
    order), else of plain fenced blocks that hold a diff, else a bare diff starting at its
    first `diff --git` or `--- ` / `+++ ` line and ending at the first line that cannot be
    part of a diff.
    """
    blocks = _fenced_blocks(text)
    chosen = [body for info, body in blocks if info in _DIFF_INFO and body.strip()]
    if not chosen:
        chosen = [body for info, body in blocks if not info and _diff_start(body) is not None]
    if not chosen:
        bare = _bare_diff(text)
        chosen = [bare] if bare else []
    if not chosen:
        return None
    return normalise_diff("\n".join(body.rstrip("\n") for body in chosen))


def normalise_diff(diff: str) -> str:
    """The diff with recounted hunk headers, git's a/ b/ prefixes, and a final newline."""
    lines = _trim_blank(diff.split("\n"))
    out: list[str] = []
    i = 0
    while i < len(lines):
        if _file_header_at(lines, i):
            out += _prefixed(lines[i], lines[i + 1])
            i += 2
        elif hunk := _HUNK.match(lines[i]):
            end = _hunk_end(lines, i + 1)
            body = _trim_blank(lines[i + 1 : end])
            out.append(_recounted(hunk, body))
            out += body
            i = end
        else:
            out.append(lines[i])
            i += 1
    return "\n".join(out) + "\n" if out else ""


def touched_files(diff: str) -> list[str]:
    """The repository-relative paths the diff reads or writes, in order, each once."""
    return list(dict.fromkeys(read for _, read in _header_names(diff) if read))


def diff_problem(diff: str) -> str | None:
    """What makes the diff unacceptable before git is asked (no files, unsafe paths), or None."""
    if not diff.strip():
        return "the diff is empty"
    names = _header_names(diff)
    if not names:
        return (
            "the diff names no file: each file's hunks need `--- a/PATH` and `+++ b/PATH` "
            "lines before them"
        )
    for written, name in names:
        parts = PurePosixPath(name).parts
        if written.startswith("/") or name.startswith("/"):
            shown = written if written.startswith("/") else name
            return f"the diff names {shown!r}: paths must be relative to the repository"
        if ".." in parts:
            return f"the diff names {name!r}, which climbs out of the repository with '..'"
        if ".git" in parts:
            return f"the diff touches {name!r}, inside git's own .git directory"
    if any(_SYMLINK_MODE.match(line) for line in diff.split("\n")):
        return "the diff creates a symbolic link; change regular files only"
    return None


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info word, content) of each fenced block, in order; an unclosed block runs to the end."""
    blocks: list[tuple[str, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info = opening.group(1), opening.group(2).lower()
        # A closing fence starts the line: a diff's context line " ```" must not close it.
        end = i + 1
        while end < len(lines) and not _closes(lines[end], fence):
            end += 1
        blocks.append((info, "\n".join(lines[i + 1 : end])))
        i = end + 1
    return blocks


def _closes(line: str, fence: str) -> bool:
    stripped = line.rstrip()
    return stripped.startswith(fence) and set(stripped) == {fence[0]}


def _bare_diff(text: str) -> str | None:
    lines = text.split("\n")
    start = _diff_start(text)
    if start is None:
        return None
    end = start
    while end < len(lines) and _is_diff_line(lines[end]):
        end += 1
    return "\n".join(lines[start:end])


def _diff_start(text: str) -> int | None:
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("diff --git ") or _file_header_at(lines, i):
            return i
    return None


def _is_diff_line(line: str) -> bool:
    return line == "" or line[0] in " +-\\@" or line.startswith(_GIT_HEADER_LINES)


def _file_header_at(lines: list[str], i: int) -> bool:
    """A `--- ` line followed by `+++ ` and then a hunk (or nothing): a file's header, not a
    removed line that happens to start with two dashes."""
    return (
        lines[i].startswith("--- ")
        and i + 1 < len(lines)
        and lines[i + 1].startswith("+++ ")
        and (i + 2 >= len(lines) or lines[i + 2].startswith("@@"))
    )


def _hunk_end(lines: list[str], i: int) -> int:
    while i < len(lines):
        line = lines[i]
        if _file_header_at(lines, i) or _HUNK.match(line):
            break
        if line and line[0] not in " +-\\":
            break
        i += 1
    return i


def _trim_blank(lines: list[str]) -> list[str]:
    end = len(lines)
    while end and lines[end - 1] == "":
        end -= 1
    return lines[:end]


def _recounted(hunk: re.Match[str], body: list[str]) -> str:
    old = sum(1 for line in body if line == "" or line[0] in " -")
    new = sum(1 for line in body if line == "" or line[0] in " +")
    return f"@@ -{hunk.group(1)},{old} +{hunk.group(2)},{new} @@{hunk.group(3)}"


def _prefixed(old_line: str, new_line: str) -> list[str]:
    """The header pair with git's prefixes where the model left them out."""
    old, old_rest = _split_header(old_line)
    new, new_rest = _split_header(new_line)
    if old.startswith('"') or new.startswith('"'):
        return [old_line, new_line]  # quoted names come from git itself, prefixes and all
    if old == "/dev/null" and not new.startswith("b/"):
        new = "b/" + new
    elif new == "/dev/null" and not old.startswith("a/"):
        old = "a/" + old
    elif old == new and not old.startswith(("a/", "/")):
        old, new = "a/" + old, "b/" + new
    return [f"--- {old}{old_rest}", f"+++ {new}{new_rest}"]


def _split_header(line: str) -> tuple[str, str]:
    """(name, the rest: a tab and a timestamp, if any) of a `--- ` or `+++ ` line."""
    name, tab, rest = line[4:].partition("\t")
    return name.rstrip(), tab + rest


def _header_names(diff: str) -> list[tuple[str, str]]:
    """(name as written, name as `git apply -p1` reads it) of every file the headers name."""
    lines = diff.split("\n")
    pairs: list[tuple[str, str]] = []
    for i, line in enumerate(lines):
        if _file_header_at(lines, i):
            written = [_split_header(line)[0], _split_header(lines[i + 1])[0]]
        elif line.startswith("diff --git "):
            written = _git_header_names(line[len("diff --git ") :])
        elif line.startswith(_NAMED):
            # Rename and copy lines name the path itself: there is no prefix to strip.
            name = _unquote(line.split(" ", 2)[2])
            pairs.append((name, name))
            continue
        else:
            continue
        for name in map(_unquote, written):
            if name != "/dev/null":
                pairs.append((name, name.split("/", 1)[1] if "/" in name else name))
    return pairs


def _git_header_names(rest: str) -> list[str]:
    """The names in `diff --git a/NAME b/NAME`, when they can be told apart."""
    if rest.startswith('"'):
        return [rest[: _quoted_end(rest) + 1]]
    half = (len(rest) - 1) // 2
    old, new = rest[:half], rest[half + 1 :]
    if rest[half : half + 1] == " " and old.split("/", 1)[-1] == new.split("/", 1)[-1]:
        return [old, new]
    return []  # a rename with spaces: its own `rename from/to` lines name it


def _quoted_end(text: str) -> int:
    i = 1
    while i < len(text) and text[i] != '"':
        i += 2 if text[i] == "\\" else 1
    return i


def _unquote(name: str) -> str:
    """A name as git writes it: plain, or C-quoted with escapes when it has odd characters."""
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    raw = name[1:-1].encode("utf-8", "surrogateescape")
    return codecs.escape_decode(raw)[0].decode("utf-8", "surrogateescape")
